-- An Immich-shaped schema (current table names, PR #19891) for the lab: what backup and restore
-- touch, not the whole product. Applied by the server stand-in at start ("migrations") unless
-- DB_SKIP_MIGRATIONS=true; idempotent, like a migration run that finds nothing to do.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS earthdistance;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
    CREATE EXTENSION IF NOT EXISTS vector;
  END IF;
END $$;

CREATE TABLE IF NOT EXISTS kysely_migrations (name varchar(255) PRIMARY KEY, "timestamp" varchar(255) NOT NULL);
CREATE TABLE IF NOT EXISTS kysely_migrations_lock (id varchar(255) PRIMARY KEY, is_locked integer NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS system_metadata (key varchar PRIMARY KEY, value jsonb NOT NULL);

CREATE TABLE IF NOT EXISTS "user" (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  email varchar NOT NULL UNIQUE,
  name varchar NOT NULL DEFAULT '',
  "isAdmin" boolean NOT NULL DEFAULT false,
  "storageLabel" varchar UNIQUE,
  "profileImagePath" varchar NOT NULL DEFAULT '',
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "deletedAt" timestamptz
);
CREATE TABLE IF NOT EXISTS library (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  name varchar NOT NULL,
  "ownerId" uuid NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
  "importPaths" text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS asset (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "ownerId" uuid NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
  "libraryId" uuid REFERENCES library(id) ON DELETE CASCADE,
  type varchar NOT NULL,
  "originalPath" varchar NOT NULL,
  "originalFileName" varchar NOT NULL,
  checksum bytea NOT NULL,
  "fileCreatedAt" timestamptz NOT NULL DEFAULT now(),
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "deletedAt" timestamptz
);
CREATE OR REPLACE FUNCTION f_unaccent(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
  RETURN unaccent('unaccent', $1);
CREATE UNIQUE INDEX IF NOT EXISTS "UQ_asset_owner_checksum" ON asset ("ownerId", checksum) WHERE "libraryId" IS NULL;
CREATE INDEX IF NOT EXISTS idx_asset_original_path_trgm ON asset USING gin (f_unaccent("originalFileName") gin_trgm_ops);
CREATE TABLE IF NOT EXISTS asset_exif (
  "assetId" uuid PRIMARY KEY REFERENCES asset(id) ON DELETE CASCADE,
  make varchar, model varchar,
  latitude double precision, longitude double precision,
  city varchar, country varchar,
  description text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS asset_file (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "assetId" uuid NOT NULL REFERENCES asset(id) ON DELETE CASCADE,
  type varchar NOT NULL,
  path varchar NOT NULL
);
CREATE TABLE IF NOT EXISTS album (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "ownerId" uuid NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
  "albumName" varchar NOT NULL DEFAULT 'Untitled Album',
  "createdAt" timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS album_asset (
  "albumId" uuid NOT NULL REFERENCES album(id) ON DELETE CASCADE,
  "assetId" uuid NOT NULL REFERENCES asset(id) ON DELETE CASCADE,
  PRIMARY KEY ("albumId", "assetId")
);
CREATE TABLE IF NOT EXISTS person (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "ownerId" uuid NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
  name varchar NOT NULL DEFAULT '',
  "thumbnailPath" varchar NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS asset_face (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "assetId" uuid NOT NULL REFERENCES asset(id) ON DELETE CASCADE,
  "personId" uuid REFERENCES person(id) ON DELETE SET NULL,
  "boundingBoxX1" integer NOT NULL DEFAULT 0, "boundingBoxY1" integer NOT NULL DEFAULT 0,
  "boundingBoxX2" integer NOT NULL DEFAULT 0, "boundingBoxY2" integer NOT NULL DEFAULT 0
);
-- CLIP / face embeddings: pgvector where the image has it, a float array otherwise.
DO $$
DECLARE emb text := CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN 'vector(512)' ELSE 'real[]' END;
BEGIN
  EXECUTE format('CREATE TABLE IF NOT EXISTS smart_search ("assetId" uuid PRIMARY KEY REFERENCES asset(id) ON DELETE CASCADE, embedding %s NOT NULL)', emb);
  EXECUTE format('CREATE TABLE IF NOT EXISTS face_search ("faceId" uuid PRIMARY KEY REFERENCES asset_face(id) ON DELETE CASCADE, embedding %s NOT NULL)', emb);
END $$;
-- Reverse geocoding: the generated column whose restore needs the search_path rewrite on PG < 17.
CREATE TABLE IF NOT EXISTS geodata_places (
  id integer PRIMARY KEY,
  name varchar(200) NOT NULL,
  longitude double precision NOT NULL,
  latitude double precision NOT NULL,
  "countryCode" char(2) NOT NULL,
  "earthCoord" earth GENERATED ALWAYS AS (ll_to_earth(latitude, longitude)) STORED
);
CREATE INDEX IF NOT EXISTS "IDX_geodata_gist_earthcoord" ON geodata_places USING gist ("earthCoord");
CREATE TABLE IF NOT EXISTS move_history (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "entityId" uuid NOT NULL, "pathType" varchar NOT NULL,
  "oldPath" varchar NOT NULL, "newPath" varchar NOT NULL
);

INSERT INTO kysely_migrations (name, "timestamp") VALUES
  ('1744910873969-Initial', '2025-04-17T00:00:00.000Z'),
  ('1752267649968-StandardizeNames', '2025-07-11T00:00:00.000Z'),
  ('1753800911775-MediaLocation', '2025-07-29T00:00:00.000Z')
ON CONFLICT DO NOTHING;
INSERT INTO kysely_migrations_lock (id, is_locked) VALUES ('migration_lock', 0) ON CONFLICT DO NOTHING;
INSERT INTO system_metadata (key, value) VALUES
  ('version-check-state', '{"checkedAt": null, "releaseVersion": "v2.3.1"}'),
  ('system-flags', '{"mountChecks": {"upload": true, "library": true, "profile": true, "thumbs": true, "encoded-video": true, "backups": true}}')
ON CONFLICT DO NOTHING;
