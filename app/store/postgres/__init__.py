"""PostgreSQL as the studio's store (``AGENTOP_DATABASE_URL=postgresql://…``).

``database`` gives store code the connection it knows from sqlite-utils, ``sql``
translates SQLite's spellings, ``migrate`` applies the schema. psycopg is an
optional dependency (the ``postgres`` extra): importing this package without it
fails with a message that says so.
"""
