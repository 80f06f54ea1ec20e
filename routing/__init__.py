"""Pure routing of mobile-originated messages by short code and keyword."""
