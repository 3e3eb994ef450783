// ReelayAMQP: placeholder until its first file lands.
