"""The registry: settings, database, ORM models, migrations, search and metadata."""
