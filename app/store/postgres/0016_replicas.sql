-- Twin of app/store/migrations/m0016_replicas.py (see its docstring): who owns
-- each background job, and the secrets every replica shares.
ALTER TABLE experiments ADD COLUMN owner text COLLATE "C";
ALTER TABLE exports ADD COLUMN owner text COLLATE "C";
ALTER TABLE finetune_jobs ADD COLUMN owner text COLLATE "C";
CREATE TABLE studio_secrets (
  name text COLLATE "C" PRIMARY KEY,
  value text COLLATE "C" NOT NULL
);
