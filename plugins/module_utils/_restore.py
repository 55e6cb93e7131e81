# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: restore a verified backup (the logic behind the db_restore module).

Order matters: the backup is checked (sha256 against its manifest) and the target inspected
before anything is touched; a non-empty target is replaced only with force; afterwards the
row counts recorded in the manifest must match.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import os
import shutil
import sqlite3
import time

from ansible_collections.safeship.webapp.plugins.module_utils._backup import (
    MANIFEST_SUFFIX,
    _decompressor,
    existing_backups,
    manifest_path_for,
)
from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    check_label,
    fsync_path,
    read_json,
    remove_path,
    sha256_file,
    sha256_tree,
)
from ansible_collections.safeship.webapp.plugins.module_utils._database import (
    connect,
    connection_argument_spec,
    quote_ident,
)


def argument_spec():
    spec = connection_argument_spec(database_required=False)
    spec.update(
        src=dict(type="path"),
        latest_in=dict(type="path"),
        label=dict(type="str"),
        target_database=dict(type="str"),
        force=dict(type="bool", default=False),
        drill=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        maintenance_db=dict(type="str", default="postgres"),
        no_owner=dict(type="bool", default=False),
    )
    return spec


def load_backup(src):
    """(backup path, manifest) for src, which names a backup or its manifest."""
    src = src.rstrip("/")
    if src.endswith(MANIFEST_SUFFIX):
        manifest_path, backup_path = src, src[:-len(MANIFEST_SUFFIX)]
    else:
        backup_path, manifest_path = src, manifest_path_for(src)
    if not os.path.lexists(backup_path):
        raise SafeshipError("backup %s does not exist." % backup_path)
    if not os.path.exists(manifest_path):
        raise SafeshipError("backup %s has no manifest (%s): only backups written and verified by "
                            "safeship.webapp.db_backup can be restored." % (backup_path, os.path.basename(manifest_path)))
    manifest = read_json(manifest_path)
    for key in ("engine", "format", "compression", "sha256"):
        if key not in manifest:
            raise SafeshipError("manifest %s lacks %r: it is not a safeship backup manifest." % (manifest_path, key))
    return backup_path, manifest


MUTUALLY_EXCLUSIVE = [("src", "latest_in"), ("drill", "force")]
REQUIRED_ONE_OF = [("target_database", "database"), ("src", "latest_in")]
REQUIRED_BY = {"label": ("latest_in",)}


def latest_backup(directory, engine, label=None):
    """The newest backup of engine (and label) in directory, as db_backup wrote it there."""
    if label is not None:
        check_label(label)
    if not os.path.isdir(directory):
        raise SafeshipError("latest_in %s is not a directory: point it at the dest of db_backup." % directory)
    for path, manifest in existing_backups(directory, label):
        if manifest.get("engine") == engine:
            return path
    raise SafeshipError("no %s backup%s in %s (a backup with its .manifest.json, written by db_backup)." % (
        engine, " labelled %r" % label if label is not None else "", directory))


def verify_checksum(backup_path, manifest):
    if os.path.isdir(backup_path):
        actual, files = sha256_tree(backup_path)
    else:
        actual = sha256_file(backup_path)
    if actual != manifest["sha256"]:
        raise SafeshipError("backup %s does not match its manifest (sha256 %s, expected %s): it is corrupt or was "
                            "modified. Refusing to restore it." % (backup_path, actual, manifest["sha256"]),
                            expected_sha256=manifest["sha256"], actual_sha256=actual)
    return actual


class Restore(object):
    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        params = module.params
        # the newest backup is taken as it is: if it is corrupt, the restore refuses it (never an older one)
        src = params.get("src") or latest_backup(params["latest_in"], params["engine"], params.get("label"))
        self.backup_path, self.manifest = load_backup(src)
        if self.manifest["engine"] != params["engine"]:
            raise SafeshipError("backup %s is a %s backup; it cannot be restored with engine %s."
                                % (self.backup_path, self.manifest["engine"], params["engine"]))
        target = params.get("target_database") or params.get("database")
        if not target:
            raise SafeshipError("target_database (or database) is required: the database to restore into.")
        self.engine = connect(params, runner, database=target)
        self.jobs = 1 if params.get("jobs") is None else params["jobs"]
        if self.jobs < 1:
            raise SafeshipError("jobs must be 1 or more.")
        if self.jobs > 1 and self.manifest["format"] not in ("custom", "directory"):
            raise SafeshipError("jobs > 1 needs a PostgreSQL custom or directory backup; this one is %s."
                                % self.manifest["format"])

    # ---- target inspection ----------------------------------------------------------------
    def target_state(self):
        """(exists, number of user tables/views/sequences)."""
        engine = self.engine
        if engine.name == "sqlite":
            exists = os.path.exists(engine.database)
            return exists, engine.user_relation_count() if exists else 0
        maintenance = self.module.params.get("maintenance_db")
        if not engine.database_exists(engine.database, maintenance):
            return False, 0
        return True, engine.user_relation_count()

    # ---- restoring ------------------------------------------------------------------------
    def _restore_postgresql(self):
        engine, manifest = self.engine, self.manifest
        pg_restore = engine.binary("pg_restore")
        if manifest["format"] == "plain":
            psql = engine.psql_argv() + ["--single-transaction", "-f", "-"]
            decompressor = _decompressor(self.runner, manifest["compression"])
            stages = ([decompressor] if decompressor else []) + [psql]
            self.runner.pipeline(stages, stdin_path=self.backup_path, what="psql (restoring %s)" % engine.database)
            return
        argv = [pg_restore, "--exit-on-error"] + engine.conn_args() + ["-d", engine.database]
        if self.module.params.get("no_owner"):
            argv += ["--no-owner", "--no-privileges"]
        if self.jobs > 1:
            argv.append("--jobs=%d" % self.jobs)
        else:
            argv.append("--single-transaction")
        if manifest["compression"] == "zstd":
            if self.jobs > 1:
                # Parallel restore needs a seekable file: decompress next to the backup first.
                plain = "%s.%d.restore.partial" % (self.backup_path, os.getpid())
                try:
                    self.runner.pipeline([_decompressor(self.runner, "zstd")], stdin_path=self.backup_path,
                                         stdout_path=plain, what="zstd")
                    self.runner.pipeline([argv + [plain]], what="pg_restore")
                finally:
                    remove_path(plain)
                return
            self.runner.pipeline([_decompressor(self.runner, "zstd"), argv], stdin_path=self.backup_path,
                                 what="pg_restore")
            return
        self.runner.pipeline([argv + [self.backup_path]], what="pg_restore")

    def _restore_mysql(self):
        engine, manifest = self.engine, self.manifest
        # The client stops at the first error (no --force), so a failed statement fails the task.
        client = engine.client_argv() + ["--binary-mode"]
        decompressor = _decompressor(self.runner, manifest["compression"])
        stages = ([decompressor] if decompressor else []) + [client]
        self.runner.pipeline(stages, stdin_path=self.backup_path, what="mysql client (restoring %s)" % engine.database)

    def _restore_sqlite(self):
        engine, manifest = self.engine, self.manifest
        target = engine.database
        partial = "%s.%d.partial" % (target, os.getpid())
        try:
            decompressor = _decompressor(self.runner, manifest["compression"])
            if manifest["format"] == "file":
                if decompressor:
                    self.runner.pipeline([decompressor], stdin_path=self.backup_path, stdout_path=partial,
                                         what="%s (restoring %s)" % (decompressor[0], self.backup_path))
                else:
                    shutil.copyfile(self.backup_path, partial)
            else:
                script = []
                if decompressor:
                    self.runner.pipeline([decompressor], stdin_path=self.backup_path, consumer=script.append,
                                         what="%s (reading %s)" % (decompressor[0], self.backup_path))
                else:
                    with open(self.backup_path, "rb") as handle:
                        script.append(handle.read())
                conn = sqlite3.connect(partial)
                try:
                    conn.executescript(b"".join(script).decode("utf-8"))
                except sqlite3.Error as exc:
                    raise SafeshipError("restoring %s failed: %s" % (self.backup_path, exc))
                finally:
                    conn.close()
            engine.integrity_check(partial)
            os.chmod(partial, 0o600)
            if os.path.exists(target):
                # The application must still be able to open the file it had: keep its owner and mode.
                st = os.stat(target)
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.chown(partial, st.st_uid, st.st_gid)
                    except OSError as exc:
                        raise SafeshipError("cannot give the restored copy the owner of %s (uid %d, gid %d): %s. "
                                            "Nothing was replaced; run the task as that user or with become."
                                            % (target, st.st_uid, st.st_gid, exc))
                os.chmod(partial, st.st_mode & 0o7777)
            fsync_path(partial)
            os.rename(partial, target)
            # A journal of the replaced database must not be replayed into the restored one.
            for suffix in ("-wal", "-shm", "-journal"):
                remove_path(target + suffix)
            fsync_path(os.path.dirname(target))
        finally:
            remove_path(partial)

    def run(self):
        params, engine, manifest = self.module.params, self.engine, self.manifest
        checksum = verify_checksum(self.backup_path, manifest)
        exists, relations = self.target_state()
        result = dict(src=self.backup_path, target_database=engine.database, sha256=checksum,
                      manifest=manifest, created=not exists, replaced=bool(exists and relations))
        if params.get("drill"):
            return self._drill(result, exists)
        if exists and relations and not params.get("force"):
            raise SafeshipError(
                "refusing to restore into %s: it already holds %d tables, views or sequences. Set force: true to "
                "replace its contents with the backup (what it holds now will be lost), or choose another "
                "target_database." % (engine.where(), relations), target_relations=relations)
        if self.module.check_mode:
            action = "replace" if result["replaced"] else ("create" if not exists else "fill")
            result.update(changed=True, msg="would %s %s from %s" % (action, engine.where(), self.backup_path))
            return result

        started = time.time()
        maintenance = params.get("maintenance_db")
        restore = self._restorer()
        if engine.name == "postgresql" and exists and relations:
            tables = self._replace_postgresql(restore, maintenance)
        else:
            if engine.name == "mysql" and exists and relations:
                engine.drop_database(engine.database)
                exists = False
            if not exists and engine.name != "sqlite":
                engine.create_database(engine.database, maintenance, manifest.get("encoding"))
            restore()
            tables = self.compare_counts()
        result.update(changed=True, tables=tables, duration=round(time.time() - started, 3))
        return result

    def _restorer(self):
        return {"postgresql": self._restore_postgresql, "mysql": self._restore_mysql,
                "sqlite": self._restore_sqlite}[self.engine.name]

    def _drill(self, result, exists):
        """Restore into a database this run creates, prove it against the manifest, drop it whatever happens."""
        engine, params = self.engine, self.module.params
        if exists:
            raise SafeshipError("refusing the drill: %s exists. A drill restores into a database it creates and drops "
                                "afterwards; name one that does not exist (a scratch name such as app_drill)."
                                % engine.where())
        result.update(drill=True, dropped=False)
        if self.module.check_mode:
            result.update(changed=False, msg="would restore %s into a new %s, check its row counts, then drop it"
                          % (self.backup_path, engine.where()))
            return result
        maintenance = params.get("maintenance_db")
        restore = self._restorer()
        started = time.time()
        try:
            if engine.name != "sqlite":
                engine.create_database(engine.database, maintenance, self.manifest.get("encoding"))
            restore()
            tables = self.compare_counts()
            duration = round(time.time() - started, 3)
        finally:
            # dropped even when the restore or the check failed: a drill leaves nothing behind
            if engine.name == "sqlite":
                for suffix in ("", "-wal", "-shm", "-journal"):
                    remove_path(engine.database + suffix)
            else:
                engine.drop_database(engine.database, maintenance)
        # the drill's database is gone again: changed stays false, the time to restore is the result
        result.update(changed=False, tables=tables, duration=duration, dropped=True)
        return result

    def _replace_postgresql(self, restore, maintenance):
        """Restore into a scratch database, check it, then swap it in by renaming: until the
        backup is proven restored, the database being replaced is untouched."""
        target = self.engine
        token = binascii.hexlify(os.urandom(4)).decode()
        scratch_name, old_name = "safeship_restore_%s" % token, "safeship_replaced_%s" % token
        scratch = connect(self.module.params, self.runner, database=scratch_name)
        scratch.create_database(scratch_name, maintenance, self.manifest.get("encoding"))
        self.engine = scratch
        try:
            restore()
            tables = self.compare_counts()
        except BaseException:
            scratch.drop_database(scratch_name, maintenance)
            raise
        finally:
            self.engine = target
        quoted = dict((k, quote_ident(v, '"')) for k, v in
                      (("target", target.database), ("scratch", scratch_name), ("old", old_name)))
        # Sessions on the old database end here, as they would with DROP DATABASE ... WITH (FORCE).
        target.query("ALTER DATABASE %(target)s ALLOW_CONNECTIONS false" % quoted, maintenance)
        for attempt in range(50):
            target.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' "
                         "AND pid <> pg_backend_pid()" % target.database, maintenance)
            try:
                target.query("ALTER DATABASE %(target)s RENAME TO %(old)s" % quoted, maintenance)
                break
            except SafeshipError as exc:
                # Terminated sessions take a moment to go; anything else is a real error.
                if "being accessed by other users" not in exc.msg or attempt == 49:
                    target.query("ALTER DATABASE %(target)s ALLOW_CONNECTIONS true" % quoted, maintenance)
                    scratch.drop_database(scratch_name, maintenance)
                    raise
                time.sleep(0.1)
        try:
            target.query("ALTER DATABASE %(scratch)s RENAME TO %(target)s" % quoted, maintenance)
        except SafeshipError:
            target.query("ALTER DATABASE %(old)s RENAME TO %(target)s" % quoted, maintenance)
            target.query("ALTER DATABASE %(target)s ALLOW_CONNECTIONS true" % quoted, maintenance)
            scratch.drop_database(scratch_name, maintenance)
            raise
        target.drop_database(old_name, maintenance)
        return tables

    def compare_counts(self):
        expected = self.manifest.get("tables") or {}
        if not expected:
            return {}
        missing = self.engine.missing_tables(list(expected))
        actual = self.engine.count_rows([t for t in expected if t not in missing])
        wrong = ["%s: %d rows, backup had %d" % (t, actual[t], n) for t, n in sorted(expected.items())
                 if t in actual and actual[t] != n]
        wrong += ["%s: missing after the restore" % t for t in missing]
        if wrong:
            raise SafeshipError("the restored %s does not match the backup's manifest: %s."
                                % (self.engine.where(), "; ".join(wrong)), tables=actual)
        return actual


def run(module, runner):
    """The db_restore module's action."""
    return Restore(module, runner).run()
