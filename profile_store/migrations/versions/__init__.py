"""The numbered revisions, oldest first (Alembic finds them by file, not by import)."""
