"""Plugin discovery: hookspecs, entry-point loading and the typed facade."""
