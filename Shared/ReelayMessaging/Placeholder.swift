// ReelayMessaging: placeholder until its first file lands.
