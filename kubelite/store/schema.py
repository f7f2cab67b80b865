"""The state database's tables (SQLAlchemy Core) and its schema version.

Owns: table and column names, and the upgrade path between schema versions. The read-only CLI
path (`reader`) reads these same tables with the standard library's sqlite3; a test keeps the
two in agreement.

Tables:
  meta        key/value: schema_version, manifests path, node name
  pods        desired pods (manifest, hashes, source file) and what the agent remembers of them,
              plus `object`: the full v1 Pod JSON (with status) that the CLI prints
  sandboxes   observed pod sandboxes
  containers  observed containers: every attempt kept (the newest two per container name)
  backoff     CrashLoopBackOff entries by stable key
  start_errors the last create/start failure per pod container (the kubelet's reasonCache)
  events      v1-style events with counts; each write takes the next node-wide resourceVersion
              (schema 4), so a watch of events resumes where its list left off
  problems    manifest problems of the last directory scan
  config_objects  ConfigMaps and Secrets accepted from the manifests (schema 2): `object` is the v1
              JSON as the API serves it (a Secret's `data` base64); read by the CLI and the API.
              PersistentVolumeClaims (with their status) and StorageClasses are kept here too
  persistent_volumes  the volumes provisioned for claims (schema 3): a directory each, kept after
              its claim is gone when the reclaim policy is Retain; `object` is the v1 PersistentVolume
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean, Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint,
)

SCHEMA_VERSION = 4

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

pods = Table(
    "pods", metadata,
    Column("uid", String, primary_key=True),
    Column("namespace", String, nullable=False, index=True),
    Column("name", String, nullable=False),
    Column("source", Text, nullable=False),
    Column("manifest", Text, nullable=False),          # the desired Pod as accepted (JSON)
    Column("pod_hash", String, nullable=False),
    Column("sandbox_hash", String, nullable=False),
    Column("container_hashes", Text, nullable=False),  # JSON {name: hash}
    Column("created_at", String, nullable=False),      # creationTimestamp (RFC 3339)
    Column("deleted_at", String),                      # deletionTimestamp once terminating
    Column("start_time", String),
    Column("terminal_phase", String),
    Column("failed_reason", String),
    Column("failed_message", Text),
    Column("object", Text, nullable=False),            # v1 Pod with status, as the CLI prints it
    Column("resource_version", Integer, nullable=False, default=1),
)

sandboxes = Table(
    "sandboxes", metadata,
    Column("id", String, primary_key=True),
    Column("uid", String, nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("sandbox_hash", String, nullable=False),
    Column("ready", Boolean, nullable=False),
    Column("created_at", String, nullable=False),
)

containers = Table(
    "containers", metadata,
    Column("id", String, primary_key=True),
    Column("uid", String, nullable=False, index=True),
    Column("name", String, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("spec_hash", String, nullable=False),
    Column("state", String, nullable=False),
    Column("sandbox_id", String, nullable=False),
    Column("image", String, nullable=False),
    Column("created_at", String, nullable=False),
    Column("started_at", String),
    Column("finished_at", String),
    Column("exit_code", Integer),
    Column("reason", String),
    Column("message", Text),
    Column("stop_reason", String),
    Column("kill_deadline", String),
)

backoff = Table(
    "backoff", metadata,
    Column("key", String, primary_key=True),
    Column("backoff_s", Float, nullable=False),
    Column("last_update", String, nullable=False),
)

start_errors = Table(
    "start_errors", metadata,
    Column("uid", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("reason", String, nullable=False),
    Column("message", Text, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String, nullable=False, index=True),
    Column("kind", String, nullable=False),
    Column("name", String, nullable=False),
    Column("uid", String, nullable=False),
    Column("field_path", String, nullable=False, default=""),
    Column("type", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("message", Text, nullable=False),
    Column("count", Integer, nullable=False, default=1),
    Column("first_timestamp", String, nullable=False),
    Column("last_timestamp", String, nullable=False),
    Column("resource_version", Integer, nullable=False, default=0, server_default="0", index=True),
    UniqueConstraint("uid", "kind", "name", "field_path", "type", "reason", "message", name="event_identity"),
)

problems = Table(
    "problems", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file", Text, nullable=False),
    Column("severity", String, nullable=False),       # Error or Warning
    Column("text", Text, nullable=False),             # one line: file, document, line, field, message
    Column("pod_key", String),                        # namespace/name when known
)

config_objects = Table(
    "config_objects", metadata,
    Column("kind", String, primary_key=True),          # ConfigMap | Secret
    Column("namespace", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("uid", String, nullable=False),
    Column("source", Text, nullable=False),            # the manifest file
    Column("object", Text, nullable=False),            # the full v1 object JSON as accepted
    Column("created_at", String, nullable=False),      # creationTimestamp (RFC 3339)
    Column("resource_version", Integer, nullable=False),
)

persistent_volumes = Table(
    "persistent_volumes", metadata,
    Column("name", String, primary_key=True),          # pvc-<claim uid>
    Column("claim_namespace", String, nullable=False),
    Column("claim_name", String, nullable=False),
    Column("claim_uid", String, nullable=False),
    Column("storage_class", String, nullable=False),
    Column("reclaim_policy", String, nullable=False),  # Retain | Delete
    Column("path", Text, nullable=False),              # the directory on this machine
    Column("phase", String, nullable=False),           # Bound | Released
    Column("object", Text, nullable=False),            # the v1 PersistentVolume JSON
    Column("created_at", String, nullable=False),
    Column("resource_version", Integer, nullable=False),
)
