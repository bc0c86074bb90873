-- An Immich-shaped schema (current table names, PR #19891) for the lab: what backup, restore and the
-- server stand-in's API touch, not the whole product. The stand-in (tests/lab/images/server.py) applies
-- it as Kysely migrations: each `-- migration: NAME` section runs once, in order, and is recorded in
-- kysely_migrations, so a migrated database is not touched again (a dropped index stays dropped and is
-- reported as schema drift, as Immich does). Sections stay IF NOT EXISTS so that databases of earlier
-- lab versions upgrade. Templates filled in by the runner:
--   {{EMBEDDING}}                 vector(512) with a vector extension, real[] without one (lab only)
--   {{VECTOR_INDEX:index:table}}  the vector index of the chosen extension (hnsw/vchordrq/vectors), or nothing

-- migration: 1744910873969-Initial
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS earthdistance;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
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
-- CLIP / face embeddings in the chosen vector extension's type.
CREATE TABLE IF NOT EXISTS smart_search (
  "assetId" uuid PRIMARY KEY REFERENCES asset(id) ON DELETE CASCADE,
  embedding {{EMBEDDING}} NOT NULL
);
CREATE TABLE IF NOT EXISTS face_search (
  "faceId" uuid PRIMARY KEY REFERENCES asset_face(id) ON DELETE CASCADE,
  embedding {{EMBEDDING}} NOT NULL
);
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

-- migration: 1752267649968-StandardizeNames
-- (Immich renamed its tables here; a lab database is created with the new names already.)
SELECT 1;

-- migration: 1753800911775-MediaLocation
-- (Immich stores absolute paths since here; the stand-in writes <media location>/... paths.)
SELECT 1;

-- migration: 1757000000000-LabServerTables
-- What the stand-in's API writes: users that log in, sessions and API keys (hashed, so they survive a
-- dump and restore), asset columns of an upload, job status, thumbnails unique per asset and type.
ALTER TABLE "user"
  ADD COLUMN IF NOT EXISTS password varchar NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS "shouldChangePassword" boolean NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS "avatarColor" varchar,
  ADD COLUMN IF NOT EXISTS "profileChangedAt" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "quotaSizeInBytes" bigint,
  ADD COLUMN IF NOT EXISTS "quotaUsageInBytes" bigint NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS status varchar NOT NULL DEFAULT 'active',
  ADD COLUMN IF NOT EXISTS "oauthId" varchar NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS "updatedAt" timestamptz NOT NULL DEFAULT now();
ALTER TABLE asset
  ADD COLUMN IF NOT EXISTS "deviceAssetId" varchar NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS "deviceId" varchar NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS "fileModifiedAt" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "localDateTime" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "updatedAt" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "isFavorite" boolean NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS "isOffline" boolean NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS "isExternal" boolean NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS visibility varchar NOT NULL DEFAULT 'timeline',
  ADD COLUMN IF NOT EXISTS status varchar NOT NULL DEFAULT 'active',
  ADD COLUMN IF NOT EXISTS duration varchar,
  ADD COLUMN IF NOT EXISTS "encodedVideoPath" varchar DEFAULT '',
  ADD COLUMN IF NOT EXISTS "sidecarPath" varchar,
  ADD COLUMN IF NOT EXISTS thumbhash bytea,
  ADD COLUMN IF NOT EXISTS "livePhotoVideoId" uuid REFERENCES asset(id) ON DELETE SET NULL,
  ADD COLUMN IF NOT EXISTS "duplicateId" uuid;
ALTER TABLE asset_exif
  ADD COLUMN IF NOT EXISTS "fileSizeInByte" bigint,
  ADD COLUMN IF NOT EXISTS "exifImageWidth" integer,
  ADD COLUMN IF NOT EXISTS "exifImageHeight" integer,
  ADD COLUMN IF NOT EXISTS "dateTimeOriginal" timestamptz,
  ADD COLUMN IF NOT EXISTS "modifyDate" timestamptz,
  ADD COLUMN IF NOT EXISTS "timeZone" varchar,
  ADD COLUMN IF NOT EXISTS state varchar;
ALTER TABLE asset_file
  ADD COLUMN IF NOT EXISTS "createdAt" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "updatedAt" timestamptz NOT NULL DEFAULT now();
ALTER TABLE album
  ADD COLUMN IF NOT EXISTS description text NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS "updatedAt" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "albumThumbnailAssetId" uuid REFERENCES asset(id) ON DELETE SET NULL,
  ADD COLUMN IF NOT EXISTS "deletedAt" timestamptz,
  ADD COLUMN IF NOT EXISTS "isActivityEnabled" boolean NOT NULL DEFAULT true,
  ADD COLUMN IF NOT EXISTS "order" varchar NOT NULL DEFAULT 'desc';
ALTER TABLE album_asset ADD COLUMN IF NOT EXISTS "createdAt" timestamptz NOT NULL DEFAULT now();
ALTER TABLE person
  ADD COLUMN IF NOT EXISTS "isHidden" boolean NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS "birthDate" date,
  ADD COLUMN IF NOT EXISTS "faceAssetId" uuid REFERENCES asset_face(id) ON DELETE SET NULL,
  ADD COLUMN IF NOT EXISTS "createdAt" timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN IF NOT EXISTS "updatedAt" timestamptz NOT NULL DEFAULT now();
ALTER TABLE asset_face ADD COLUMN IF NOT EXISTS "sourceType" varchar NOT NULL DEFAULT 'machine-learning';
CREATE TABLE IF NOT EXISTS session (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  token bytea NOT NULL,
  "userId" uuid NOT NULL REFERENCES "user"(id) ON UPDATE CASCADE ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  "expiresAt" timestamptz,
  "deviceType" varchar NOT NULL DEFAULT '',
  "deviceOS" varchar NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS session_token_idx ON session (token);
CREATE TABLE IF NOT EXISTS api_key (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  name varchar NOT NULL,
  key bytea NOT NULL,
  "userId" uuid NOT NULL REFERENCES "user"(id) ON UPDATE CASCADE ON DELETE CASCADE,
  permissions varchar[] NOT NULL,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_key_key_idx ON api_key (key);
CREATE TABLE IF NOT EXISTS asset_job_status (
  "assetId" uuid PRIMARY KEY REFERENCES asset(id) ON UPDATE CASCADE ON DELETE CASCADE,
  "facesRecognizedAt" timestamptz,
  "metadataExtractedAt" timestamptz,
  "duplicatesDetectedAt" timestamptz,
  "ocrAt" timestamptz
);
ALTER INDEX IF EXISTS "UQ_asset_owner_checksum" RENAME TO "UQ_assets_owner_checksum";
CREATE UNIQUE INDEX IF NOT EXISTS "UQ_assets_owner_checksum" ON asset ("ownerId", checksum) WHERE "libraryId" IS NULL;
ALTER INDEX IF EXISTS idx_asset_original_path_trgm RENAME TO "asset_originalFilename_trigram_idx";
CREATE INDEX IF NOT EXISTS "asset_originalFilename_trigram_idx" ON asset USING gin (f_unaccent("originalFileName") gin_trgm_ops);
CREATE INDEX IF NOT EXISTS "asset_checksum_idx" ON asset (checksum);
CREATE UNIQUE INDEX IF NOT EXISTS "asset_file_assetId_type_uq" ON asset_file ("assetId", type);
{{VECTOR_INDEX:clip_index:smart_search}}
{{VECTOR_INDEX:face_index:face_search}}

-- migration: 1762000000000-AddChecksumAlgorithm
-- sha1 = SHA-1 of the file's bytes (uploads), sha1-path = SHA-1 of "path:<path>" (external libraries).
ALTER TABLE asset ADD COLUMN IF NOT EXISTS "checksumAlgorithm" varchar NOT NULL DEFAULT 'sha1';
UPDATE asset SET "checksumAlgorithm" = 'sha1-path' WHERE "isExternal";
