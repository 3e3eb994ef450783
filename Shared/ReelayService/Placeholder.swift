// ReelayService: placeholder until its first file lands.
