// ReelayStore: placeholder until its first file lands.
