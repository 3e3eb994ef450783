// ReelayConfig: placeholder until its first file lands.
