"""COG headers: the engine that reads them, their outcome rows, and the one join back to records."""
