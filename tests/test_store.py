"""The state store: schema versions and upgrades, WAL, events with counts, the stdlib read path."""

from __future__ import annotations

import sqlite3

import pytest

from kubelite.errors import StoreError
from kubelite.store import schema
from kubelite.store.reader import Reader
from kubelite.store.store import MIGRATIONS, Store
from tests.helpers import T0, at


def test_a_new_database_is_created_at_the_current_schema_in_wal_mode(tmp_path):
    store = Store(tmp_path)
    assert store.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
    assert store.execute_sql("PRAGMA journal_mode")[0][0] == "wal"
    store.close()


def test_every_schema_version_has_an_upgrade_step():
    assert sorted(MIGRATIONS) == list(range(schema.SCHEMA_VERSION))


def test_an_older_database_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "kubelite.db")  # version 0: a file without kubelite's tables
    db.execute("CREATE TABLE unrelated (x)")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert store.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
    assert store.execute_sql("SELECT count(*) FROM pods")[0][0] == 0
    store.close()


def test_a_database_from_a_newer_kubelite_is_refused_by_daemon_and_cli(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "kubelite.db")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(schema.SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this kubelite"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="newer than this kubelite"):
        Reader(tmp_path)


def test_writes_need_a_transaction_and_a_failed_one_leaves_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError):
        store.set_meta("k", "v")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.set_meta("k", "v")
            raise RuntimeError("boom")
    assert store.get_meta("k") is None
    store.close()


def test_identical_events_are_counted_not_repeated(tmp_path):
    store = Store(tmp_path)
    with store.transaction():
        for second in (0, 5, 9):
            store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Warning",
                               reason="BackOff", message="Back-off restarting failed container", now=at(second))
        store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Normal",
                           reason="Started", message="Started container app", now=at(10))
    reader = Reader(tmp_path)
    events = reader.events("default")
    assert [(e["reason"], e["count"]) for e in events] == [("BackOff", 3), ("Started", 1)]
    assert (events[0]["firstTimestamp"], events[0]["lastTimestamp"]) == ("2026-11-28T06:00:00Z",
                                                                         "2026-11-28T06:00:09Z")
    with store.transaction():
        store.prune_events(older_than=at(9.5))
    assert [e["reason"] for e in reader.events(None)] == ["Started"]
    reader.close()
    store.close()


def test_the_reader_treats_a_missing_database_as_empty_and_never_creates_one(tmp_path):
    reader = Reader(tmp_path / "nothing")
    assert reader.pods() == [] and reader.events(None) == [] and reader.meta("manifests") is None
    assert not (tmp_path / "nothing").exists()
    assert T0.tzinfo is not None


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_refused_with_one_clear_line(tmp_path, damage):
    Store(tmp_path).close()
    db = tmp_path / "kubelite.db"
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite at all " * 200)
    else:
        db.write_bytes(db.read_bytes()[:100])
    for name in ("kubelite.db-wal", "kubelite.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StoreError) as exc:
        Store(tmp_path)
    message = str(exc.value)
    assert message.startswith(f"{db}: the state database is damaged") and "\n" not in message


def test_the_cli_reports_a_damaged_database_in_one_line(tmp_path):
    Store(tmp_path).close()
    (tmp_path / "kubelite.db").write_bytes(b"\x00garbage" * 500)
    with pytest.raises(StoreError, match="the state database is damaged"):
        Reader(tmp_path).pods()


def test_a_version_1_database_is_upgraded_keeping_its_pods_and_gaining_config_objects(tmp_path):
    from sqlalchemy import create_engine

    from kubelite.store.store import _migrate_0_to_1

    engine = create_engine(f"sqlite:///{tmp_path / 'kubelite.db'}")
    with engine.begin() as conn:   # exactly what kubelite 1 wrote: the v1 tables, schema_version 1
        _migrate_0_to_1(conn)
        conn.exec_driver_sql("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.exec_driver_sql("INSERT INTO pods (uid, namespace, name, source, manifest, pod_hash, sandbox_hash, "
                             "container_hashes, created_at, object, resource_version) VALUES "
                             "('u1', 'default', 'web', '/m/web.yaml', '{}', 'h', 's', '{}', 't', '{}', 1)")
    engine.dispose()
    db = sqlite3.connect(tmp_path / "kubelite.db")
    assert "config_objects" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    store = Store(tmp_path)
    assert store.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
    assert [r["uid"] for r in store.load().pods] == ["u1"]
    with store.transaction():
        store.put_config_object({"kind": "ConfigMap", "namespace": "default", "name": "cfg", "uid": "c1",
                                 "source": "/m/cfg.yaml", "object": '{"kind": "ConfigMap"}',
                                 "created_at": "2026-11-28T06:00:00Z", "resource_version": 1})
    columns = [r[1] for r in store.execute_sql("PRAGMA table_info(config_objects)")]
    assert columns == ["kind", "namespace", "name", "uid", "source", "object", "created_at", "resource_version"]
    assert [r[0] for r in store.execute_sql("SELECT name FROM pragma_index_list('config_objects')")], "no key"
    reader = Reader(tmp_path)
    assert [o["kind"] for o in reader.config_objects("ConfigMap")] == ["ConfigMap"]
    assert reader.config_objects("Secret") == []
    reader.close()
    store.close()


def test_a_version_2_database_is_upgraded_to_3_keeping_its_objects_and_gaining_persistent_volumes(tmp_path):
    from sqlalchemy import create_engine

    from kubelite.store.store import _migrate_0_to_1, _migrate_1_to_2

    engine = create_engine(f"sqlite:///{tmp_path / 'kubelite.db'}")
    with engine.begin() as conn:   # exactly what kubelite 2 wrote: schema_version 2, no persistent_volumes
        _migrate_0_to_1(conn)
        _migrate_1_to_2(conn)
        conn.exec_driver_sql("INSERT INTO meta VALUES ('schema_version', '2')")
        conn.exec_driver_sql("INSERT INTO config_objects VALUES ('ConfigMap', 'default', 'cfg', 'c1', '/m/cfg.yaml', "
                             "'{\"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"cfg\"}}', 't', 1)")
    engine.dispose()
    reader = Reader(tmp_path)   # the CLI of this version reads a database not upgraded yet
    assert reader.persistent_volumes() == [] and len(reader.config_objects("ConfigMap")) == 1
    reader.close()
    store = Store(tmp_path)
    assert store.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
    assert [r["name"] for r in store.load().config_objects] == ["cfg"]
    with store.transaction():
        store.put_persistent_volume({"name": "pvc-1", "claim_namespace": "default", "claim_name": "data",
                                     "claim_uid": "1", "storage_class": "local-path", "reclaim_policy": "Retain",
                                     "path": "/v/pvc-1", "phase": "Bound",
                                     "object": '{"kind": "PersistentVolume", "metadata": {"name": "pvc-1"}}',
                                     "created_at": "2026-11-28T06:00:00Z", "resource_version": 2})
    assert [r["name"] for r in store.load().persistent_volumes] == ["pvc-1"]
    reader = Reader(tmp_path)
    assert [(v["metadata"]["name"], v["metadata"]["resourceVersion"]) for v in reader.persistent_volumes()] == [
        ("pvc-1", "2")]
    reader.close()
    store.close()


def test_each_event_write_takes_the_next_node_wide_resource_version_and_a_watch_reads_since_one(tmp_path):
    store = Store(tmp_path)
    with store.transaction():
        store.next_resource_version()                 # a pod's write: 1
        store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Normal",
                           reason="Started", message="Started container app", now=at(0))          # 2
        store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Warning",
                           reason="BackOff", message="Back-off restarting failed container", now=at(1))   # 3
    with store.transaction():
        store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Normal",
                           reason="Started", message="Started container app", now=at(5))          # counted: 4
        store.record_event(namespace="other", kind="Pod", name="db", uid="u2", type_="Normal",
                           reason="Pulled", message="image present", now=at(6), version=9)   # a queued write's own
    reader = Reader(tmp_path)
    assert reader.resource_version() == 4
    listed = reader.events("default")
    assert [(e["reason"], e["metadata"]["resourceVersion"]) for e in listed] == [("BackOff", "3"), ("Started", "4")]
    since = reader.events(None, since=2)              # in the order written, a counted one at its new version
    assert [(e["reason"], e["count"], e["metadata"]["resourceVersion"]) for e in since] == [
        ("BackOff", 1, "3"), ("Started", 2, "4"), ("Pulled", 1, "9")]
    assert [e["reason"] for e in reader.events("default", since=3)] == ["Started"]
    assert reader.events(None, since=9) == []
    reader.close()
    store.close()


def test_a_version_3_database_gains_event_versions_and_its_reader_reads_events_before(tmp_path):
    from sqlalchemy import create_engine

    from kubelite.store.store import _migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3

    engine = create_engine(f"sqlite:///{tmp_path / 'kubelite.db'}")
    with engine.begin() as conn:   # what kubelite 3 wrote: its events had no resourceVersion
        for step in (_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3):
            step(conn)
        conn.exec_driver_sql("INSERT INTO meta VALUES ('schema_version', '3')")
        conn.exec_driver_sql("DROP INDEX ix_events_resource_version")
        conn.exec_driver_sql("ALTER TABLE events DROP COLUMN resource_version")
        conn.exec_driver_sql("INSERT INTO events VALUES (1, 'default', 'Pod', 'web', 'u1', '', 'Normal', 'Started', "
                             "'m', 1, '2026-11-28T06:00:00+00:00', '2026-11-28T06:00:00+00:00')")
    engine.dispose()
    db = sqlite3.connect(tmp_path / "kubelite.db")
    db.close()
    reader = Reader(tmp_path)   # the CLI of this version reads a database not upgraded yet
    assert [(e["reason"], e["metadata"]["resourceVersion"]) for e in reader.events(None)] == [("Started", "0")]
    reader.close()
    store = Store(tmp_path)
    assert store.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
    with store.transaction():
        store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Normal",
                           reason="Killing", message="k", now=at(1))
    reader = Reader(tmp_path)
    assert [(e["reason"], e["metadata"]["resourceVersion"]) for e in reader.events(None, since=0)] == [("Killing", "1")]
    assert "ix_events_resource_version" in [r[1] for r in store.execute_sql("PRAGMA index_list(events)")]
    reader.close()
    store.close()


def test_the_reader_of_a_version_1_database_sees_no_config_objects(tmp_path):
    from sqlalchemy import create_engine

    from kubelite.store.store import _migrate_0_to_1

    engine = create_engine(f"sqlite:///{tmp_path / 'kubelite.db'}")
    with engine.begin() as conn:
        _migrate_0_to_1(conn)
        conn.exec_driver_sql("INSERT INTO meta VALUES ('schema_version', '1')")
    engine.dispose()
    reader = Reader(tmp_path)
    assert reader.config_objects("ConfigMap") == []
    reader.close()


def test_the_database_is_readable_by_its_owner_only_it_holds_secrets(tmp_path):
    import stat

    old = tmp_path / "old"
    old.mkdir()
    (old / "kubelite.db").touch(mode=0o644)
    (old / "kubelite.db").chmod(0o644)
    for root in (tmp_path / "new", old):
        store = Store(root)
        store.close()
        for f in root.glob("kubelite.db*"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
