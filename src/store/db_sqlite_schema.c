/*
 * db_sqlite_schema.c — the SQLite schema, as an ordered list of migrations.
 *
 * sq_migrations[i] takes a database from schema version i to i + 1.  Each
 * runs in its own write transaction together with the update of
 * schema_version (db_sqlite.c), so a crash during a migration leaves the
 * previous version intact.  Migrations are append-only: a released one is
 * never edited; a change to the schema is a new entry here and a new
 * LP_DB_SCHEMA_VERSION.  docs/database.md explains each table.
 *
 * Integrity the database itself enforces (a second line behind db.c's
 * checks): foreign keys, one version_code per app, one original release
 * per (app, version), CHECK constraints on enumerations and ranges.
 */
#include "store/db_sqlite.h"

const char *const sq_migrations[LP_DB_SCHEMA_VERSION] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE apps ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE channels ("
    "  id INTEGER PRIMARY KEY,"
    "  app_id INTEGER NOT NULL REFERENCES apps(id),"
    "  name TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (app_id, name)"
    ");"
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  salt BLOB NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  scopes TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER,"
    "  last_used_at INTEGER"
    ");"
    "CREATE TABLE releases ("
    "  id INTEGER PRIMARY KEY,"
    "  app_id INTEGER NOT NULL REFERENCES apps(id),"
    "  version TEXT NOT NULL,"
    "  version_code INTEGER NOT NULL CHECK (version_code > 0),"
    "  manifest_sha256 TEXT NOT NULL CHECK (length(manifest_sha256) = 64),"
    "  manifest_size INTEGER NOT NULL CHECK (manifest_size >= 0),"
    "  runtime_version TEXT,"
    "  platform TEXT,"
    "  arch TEXT,"
    "  mandatory INTEGER NOT NULL DEFAULT 0 CHECK (mandatory IN (0, 1)),"
    "  notes TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  created_by TEXT REFERENCES tokens(id),"
    "  state TEXT NOT NULL CHECK (state IN ('pending', 'published', 'withdrawn')),"
    "  rollback_of INTEGER REFERENCES releases(id),"
    "  UNIQUE (app_id, version_code)"
    ");"
    "CREATE UNIQUE INDEX releases_original_version ON releases (app_id, version)"
    "  WHERE rollback_of IS NULL;"
    "CREATE INDEX releases_version ON releases (app_id, version, version_code);"
    "CREATE TABLE release_channels ("
    "  release_id INTEGER NOT NULL REFERENCES releases(id),"
    "  channel_id INTEGER NOT NULL REFERENCES channels(id),"
    "  PRIMARY KEY (release_id, channel_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX release_channels_by_channel ON release_channels (channel_id, release_id);"
    "CREATE TABLE uploads ("
    "  id TEXT PRIMARY KEY,"
    "  app_id INTEGER NOT NULL REFERENCES apps(id),"
    "  token_id TEXT REFERENCES tokens(id),"
    "  path TEXT NOT NULL,"
    "  expected_size INTEGER NOT NULL CHECK (expected_size >= 0),"
    "  expected_sha256 TEXT CHECK (expected_sha256 IS NULL OR length(expected_sha256) = 64),"
    "  received INTEGER NOT NULL DEFAULT 0"
    "    CHECK (received >= 0 AND received <= expected_size),"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX uploads_by_updated ON uploads (updated_at);",

    /* 1 -> 2: devices and the events they report (telemetry).  An event
     * belongs to its device row; (app, device, seq) is unique so a batch
     * sent twice is stored once.  last_event_seq names the device's newest
     * event (highest seq).  events_by_app serves "newest first" lists of an
     * app, events_by_type the same filtered by type. */
    "CREATE TABLE devices ("
    "  app_id INTEGER NOT NULL REFERENCES apps(id),"
    "  device_id TEXT NOT NULL CHECK (length(device_id) BETWEEN 16 AND 64),"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL CHECK (last_seen >= first_seen),"
    "  version_code INTEGER CHECK (version_code IS NULL OR version_code > 0),"
    "  last_event_seq INTEGER CHECK (last_event_seq IS NULL OR last_event_seq > 0),"
    "  dropped INTEGER NOT NULL DEFAULT 0 CHECK (dropped >= 0),"
    "  PRIMARY KEY (app_id, device_id)"
    ") WITHOUT ROWID;"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  app_id INTEGER NOT NULL,"
    "  device_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL CHECK (seq > 0),"
    "  type TEXT NOT NULL CHECK (type IN ('checked', 'downloaded', 'verified', 'staged',"
    "    'activated', 'healthy', 'failed', 'rolled_back')),"
    "  at INTEGER NOT NULL CHECK (at > 0),"
    "  version TEXT,"
    "  version_code INTEGER CHECK (version_code IS NULL OR version_code > 0),"
    "  from_version_code INTEGER CHECK (from_version_code IS NULL OR from_version_code > 0),"
    "  reason TEXT,"
    "  duration_ms INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),"
    "  received_at INTEGER NOT NULL,"
    "  UNIQUE (app_id, device_id, seq),"
    "  FOREIGN KEY (app_id, device_id) REFERENCES devices (app_id, device_id)"
    ");"
    "CREATE INDEX events_by_app ON events (app_id, id);"
    "CREATE INDEX events_by_type ON events (app_id, type, id);",

    /* 2 -> 3: deltas between releases.  A pair (from, to) of releases of
     * one app is planned when `to` is published and finished when every
     * file of `to` that needed a delta was dealt with; delta_pairs_pending
     * serves "the oldest pending pair".  deltas holds one row per pair and
     * result file; deltas_by_content finds what any pair recorded for a
     * (base, result), so a delta is made once whatever pairs need it. */
    "CREATE TABLE delta_pairs ("
    "  app_id INTEGER NOT NULL REFERENCES apps(id),"
    "  from_release_id INTEGER NOT NULL REFERENCES releases(id),"
    "  to_release_id INTEGER NOT NULL REFERENCES releases(id),"
    "  state TEXT NOT NULL CHECK (state IN ('pending', 'done')),"
    "  created_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  CHECK (from_release_id <> to_release_id),"
    "  PRIMARY KEY (from_release_id, to_release_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX delta_pairs_pending ON delta_pairs (state, created_at, to_release_id,"
    "  from_release_id);"
    "CREATE INDEX delta_pairs_by_to ON delta_pairs (to_release_id);"
    "CREATE TABLE deltas ("
    "  app_id INTEGER NOT NULL REFERENCES apps(id),"
    "  from_release_id INTEGER NOT NULL,"
    "  to_release_id INTEGER NOT NULL,"
    "  result_sha256 TEXT NOT NULL CHECK (length(result_sha256) = 64),"
    "  base_sha256 TEXT NOT NULL CHECK (length(base_sha256) = 64),"
    "  size INTEGER NOT NULL CHECK (size >= 0),"
    "  state TEXT NOT NULL CHECK (state IN ('made', 'too_large', 'failed')),"
    "  PRIMARY KEY (from_release_id, to_release_id, result_sha256),"
    "  FOREIGN KEY (from_release_id, to_release_id)"
    "    REFERENCES delta_pairs (from_release_id, to_release_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX deltas_by_content ON deltas (base_sha256, result_sha256);"
    "CREATE INDEX deltas_by_to ON deltas (to_release_id, state);",

    /* 3 -> 4: the figures of a download as columns of an event (NULL when
     * the device did not send them, as for every event stored before). */
    "ALTER TABLE events ADD COLUMN bytes INTEGER CHECK (bytes IS NULL OR bytes >= 0);"
    "ALTER TABLE events ADD COLUMN files_fetched INTEGER"
    "  CHECK (files_fetched IS NULL OR files_fetched >= 0);"
    "ALTER TABLE events ADD COLUMN files_delta INTEGER"
    "  CHECK (files_delta IS NULL OR files_delta >= 0);"
    "ALTER TABLE events ADD COLUMN bytes_delta_saved INTEGER"
    "  CHECK (bytes_delta_saved IS NULL OR bytes_delta_saved >= 0);"
    "ALTER TABLE events ADD COLUMN delta_fallbacks INTEGER"
    "  CHECK (delta_fallbacks IS NULL OR delta_fallbacks >= 0);",
    /* 4 -> 5: the audit log.  One row per management action or automatic
     * decision, numbered 1, 2, 3, ... without gaps; each row's hash covers
     * its fields and the previous row's hash (docs/audit.md), so a changed
     * or removed row breaks the chain.  The triggers refuse UPDATE and
     * DELETE through SQL: the table only grows. */
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY CHECK (seq > 0),"
    "  at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  app TEXT,"
    "  subject TEXT,"
    "  details TEXT NOT NULL,"
    "  prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),"
    "  hash TEXT NOT NULL CHECK (length(hash) = 64)"
    ");"
    "CREATE INDEX audit_by_app ON audit (app, seq);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit entries cannot be changed'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit entries cannot be removed'); END;",
    /* 5 -> 6: targeting rules of a release (a JSON object in canonical
     * form, signed with the release; NULL: no rules beyond the columns). */
    "ALTER TABLE releases ADD COLUMN targeting TEXT;",
    /* 6 -> 7: rollouts.  A row of `rollouts` is the staged rollout of a
     * release on one of its channels: the share of devices offered it (in
     * basis points, 10000 = all), its state, and its weight when it is an
     * arm of the channel's A/B split; no row means all devices, active.
     * A channel may have a maintenance window (minutes after midnight,
     * UTC; start = end is refused).  The app's guardrail: the failure rate
     * (basis points) and the least number of devices that trigger an
     * automatic halt.  Events and devices carry the channel the device
     * reported, for the aggregates per release and channel. */
    "CREATE TABLE rollouts ("
    "  release_id INTEGER NOT NULL REFERENCES releases(id),"
    "  channel_id INTEGER NOT NULL REFERENCES channels(id),"
    "  percent_bp INTEGER NOT NULL CHECK (percent_bp BETWEEN 0 AND 10000),"
    "  state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'halted')),"
    "  weight INTEGER CHECK (weight IS NULL OR weight BETWEEN 1 AND 10000),"
    "  reason TEXT,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (release_id, channel_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX rollouts_by_channel ON rollouts (channel_id, release_id);"
    "ALTER TABLE channels ADD COLUMN window_start INTEGER"
    "  CHECK (window_start IS NULL OR window_start BETWEEN 0 AND 1439);"
    "ALTER TABLE channels ADD COLUMN window_end INTEGER"
    "  CHECK (window_end IS NULL OR (window_end BETWEEN 0 AND 1439"
    "         AND window_start IS NOT NULL AND window_end <> window_start));"
    "ALTER TABLE apps ADD COLUMN guard_rate_bp INTEGER NOT NULL DEFAULT 500"
    "  CHECK (guard_rate_bp BETWEEN 1 AND 10000);"
    "ALTER TABLE apps ADD COLUMN guard_min_devices INTEGER NOT NULL DEFAULT 20"
    "  CHECK (guard_min_devices >= 1);"
    "ALTER TABLE events ADD COLUMN channel TEXT;"
    "ALTER TABLE devices ADD COLUMN channel TEXT;"
    "CREATE INDEX events_by_release ON events (app_id, version_code, type);"
    "CREATE INDEX events_rolled_back ON events (app_id, from_version_code)"
    "  WHERE type = 'rolled_back';",
};
