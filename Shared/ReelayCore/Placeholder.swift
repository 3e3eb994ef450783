// ReelayCore: placeholder until its first file lands.
