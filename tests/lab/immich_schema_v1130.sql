-- The lab schema in the naming of Immich <= 1.136 (TypeORM era, before the table renames of PR #19891
-- in 1.137): plural tables, `exif`, `asset_files`, `albums_assets_assets`, TypeORM's `migrations`
-- table. Used by the server stand-in when IMMICH_VERSION < 1.137 (tests/lab/images/server.py); paths
-- are stored as that version stored them, relative to /usr/src/app (`upload/upload/<userId>/...`).
-- Each `-- migration: NAME` section runs once and is recorded in `migrations` (timestamp from NAME).
-- Templates: see immich_schema.sql.

-- migration: LabInitialV1130x1700000000000
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS earthdistance;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE IF NOT EXISTS system_metadata (key varchar PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  email varchar NOT NULL UNIQUE,
  password varchar NOT NULL DEFAULT '',
  name varchar NOT NULL DEFAULT '',
  "isAdmin" boolean NOT NULL DEFAULT false,
  "storageLabel" varchar UNIQUE,
  "profileImagePath" varchar NOT NULL DEFAULT '',
  "profileChangedAt" timestamptz NOT NULL DEFAULT now(),
  "shouldChangePassword" boolean NOT NULL DEFAULT true,
  "avatarColor" varchar,
  "quotaSizeInBytes" bigint,
  "quotaUsageInBytes" bigint NOT NULL DEFAULT 0,
  status varchar NOT NULL DEFAULT 'active',
  "oauthId" varchar NOT NULL DEFAULT '',
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  "deletedAt" timestamptz
);
CREATE TABLE IF NOT EXISTS libraries (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  name varchar NOT NULL,
  "ownerId" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  "importPaths" text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS assets (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "deviceAssetId" varchar NOT NULL DEFAULT '',
  "ownerId" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  "deviceId" varchar NOT NULL DEFAULT '',
  "libraryId" uuid REFERENCES libraries(id) ON DELETE CASCADE,
  type varchar NOT NULL,
  "originalPath" varchar NOT NULL,
  "originalFileName" varchar NOT NULL,
  checksum bytea NOT NULL,
  "fileCreatedAt" timestamptz NOT NULL DEFAULT now(),
  "fileModifiedAt" timestamptz NOT NULL DEFAULT now(),
  "localDateTime" timestamptz NOT NULL DEFAULT now(),
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  "deletedAt" timestamptz,
  "isFavorite" boolean NOT NULL DEFAULT false,
  "isArchived" boolean NOT NULL DEFAULT false,
  "isVisible" boolean NOT NULL DEFAULT true,
  "isOffline" boolean NOT NULL DEFAULT false,
  "isExternal" boolean NOT NULL DEFAULT false,
  status varchar NOT NULL DEFAULT 'active',
  duration varchar,
  "encodedVideoPath" varchar DEFAULT '',
  "sidecarPath" varchar,
  thumbhash bytea,
  "livePhotoVideoId" uuid REFERENCES assets(id) ON DELETE SET NULL,
  "duplicateId" uuid
);
CREATE OR REPLACE FUNCTION f_unaccent(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
  RETURN unaccent('unaccent', $1);
CREATE UNIQUE INDEX IF NOT EXISTS "UQ_assets_owner_checksum" ON assets ("ownerId", checksum) WHERE "libraryId" IS NULL;
CREATE INDEX IF NOT EXISTS idx_originalfilename_trigram ON assets USING gin (f_unaccent("originalFileName") gin_trgm_ops);
CREATE TABLE IF NOT EXISTS exif (
  "assetId" uuid PRIMARY KEY REFERENCES assets(id) ON DELETE CASCADE,
  make varchar, model varchar,
  "exifImageWidth" integer, "exifImageHeight" integer,
  "fileSizeInByte" bigint,
  "dateTimeOriginal" timestamptz, "modifyDate" timestamptz, "timeZone" varchar,
  latitude double precision, longitude double precision,
  city varchar, state varchar, country varchar,
  description text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS asset_files (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "assetId" uuid NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  type varchar NOT NULL,
  path varchar NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS "UQ_assetId_type" ON asset_files ("assetId", type);
CREATE TABLE IF NOT EXISTS asset_job_status (
  "assetId" uuid PRIMARY KEY REFERENCES assets(id) ON DELETE CASCADE,
  "facesRecognizedAt" timestamptz,
  "metadataExtractedAt" timestamptz,
  "duplicatesDetectedAt" timestamptz,
  "previewAt" timestamptz,
  "thumbnailAt" timestamptz
);
CREATE TABLE IF NOT EXISTS albums (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "ownerId" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  "albumName" varchar NOT NULL DEFAULT 'Untitled Album',
  description text NOT NULL DEFAULT '',
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  "albumThumbnailAssetId" uuid REFERENCES assets(id) ON DELETE SET NULL,
  "deletedAt" timestamptz,
  "isActivityEnabled" boolean NOT NULL DEFAULT true,
  "order" varchar NOT NULL DEFAULT 'desc'
);
CREATE TABLE IF NOT EXISTS albums_assets_assets (
  "albumsId" uuid NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
  "assetsId" uuid NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY ("albumsId", "assetsId")
);
CREATE TABLE IF NOT EXISTS person (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "ownerId" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name varchar NOT NULL DEFAULT '',
  "thumbnailPath" varchar NOT NULL DEFAULT '',
  "isHidden" boolean NOT NULL DEFAULT false,
  "birthDate" date,
  "faceAssetId" uuid,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS asset_faces (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  "assetId" uuid NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
  "personId" uuid REFERENCES person(id) ON DELETE SET NULL,
  "boundingBoxX1" integer NOT NULL DEFAULT 0, "boundingBoxY1" integer NOT NULL DEFAULT 0,
  "boundingBoxX2" integer NOT NULL DEFAULT 0, "boundingBoxY2" integer NOT NULL DEFAULT 0,
  "sourceType" varchar NOT NULL DEFAULT 'machine-learning'
);
CREATE TABLE IF NOT EXISTS smart_search (
  "assetId" uuid PRIMARY KEY REFERENCES assets(id) ON DELETE CASCADE,
  embedding {{EMBEDDING}} NOT NULL
);
CREATE TABLE IF NOT EXISTS face_search (
  "faceId" uuid PRIMARY KEY REFERENCES asset_faces(id) ON DELETE CASCADE,
  embedding {{EMBEDDING}} NOT NULL
);
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
CREATE TABLE IF NOT EXISTS sessions (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  token varchar NOT NULL,
  "userId" uuid NOT NULL REFERENCES users(id) ON UPDATE CASCADE ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  "deviceType" varchar NOT NULL DEFAULT '',
  "deviceOS" varchar NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS api_keys (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  name varchar NOT NULL,
  key varchar NOT NULL,
  "userId" uuid NOT NULL REFERENCES users(id) ON UPDATE CASCADE ON DELETE CASCADE,
  permissions varchar[] NOT NULL DEFAULT '{all}',
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
{{VECTOR_INDEX:clip_index:smart_search}}
{{VECTOR_INDEX:face_index:face_search}}
