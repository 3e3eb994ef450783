// ReelayPostgres: placeholder until its first file lands.
