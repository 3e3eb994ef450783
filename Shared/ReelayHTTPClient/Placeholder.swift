// ReelayHTTPClient: placeholder until its first file lands.
