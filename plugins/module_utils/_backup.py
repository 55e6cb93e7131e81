# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: verified database backups (the logic behind the db_backup module).

A backup is written as NAME.<pid>.partial, verified, hashed, and only then renamed to
NAME; its manifest NAME.manifest.json follows. Nothing ever sits under a final name
unless it was verified, whatever happens (kill, full disk, server gone).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import gzip
import hashlib
import os
import re
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    check_label,
    chmod_private,
    free_bytes,
    fsync_path,
    fsync_tree,
    human_size,
    iso,
    path_size,
    pid_alive,
    read_json,
    remove_path,
    sha256_file,
    sha256_tree,
    split_table_name,
    utc_now,
    write_json_atomic,
)
from ansible_collections.safeship.webapp.plugins.module_utils._database import connect, connection_argument_spec
from ansible_collections.safeship.webapp.plugins.module_utils._runner import PIPE, CommandError

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
FORMATS = {
    "postgresql": ("custom", "directory", "plain"),
    "mysql": ("plain",),
    "sqlite": ("file", "plain"),
}
DEFAULT_FORMAT = {"postgresql": "custom", "mysql": "plain", "sqlite": "file"}
LEVELS = {"gzip": (1, 9, 6), "zstd": (1, 19, 3)}
PG_TRAILER = b"-- PostgreSQL database dump complete"
MYSQL_TRAILER = b"-- Dump completed"
SQLITE_PLAIN_TRAILER = b"COMMIT;"
TAIL_BYTES = 4096


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        dest=dict(type="path", required=True),
        format=dict(type="str", choices=["custom", "directory", "plain", "file"]),
        jobs=dict(type="int", default=1),
        compression=dict(type="str", choices=["none", "gzip", "zstd"]),
        compression_level=dict(type="int"),
        tables=dict(type="list", elements="str", default=[]),
        label=dict(type="str"),
        keep=dict(type="int"),
        check_space=dict(type="bool", default=True),
    )
    return spec


def manifest_path_for(path):
    return path.rstrip("/") + MANIFEST_SUFFIX


class BackupPlan(object):
    """What a backup of this database with these options will be: resolved and validated up front,
    so bad input fails before anything is touched."""

    def __init__(self, engine, params):
        self.engine = engine
        self.params = params
        name = engine.name
        self.format = params.get("format") or DEFAULT_FORMAT[name]
        if self.format not in FORMATS[name]:
            raise SafeshipError("format %s is not available for engine %s; choose one of: %s."
                                % (self.format, name, ", ".join(FORMATS[name])))
        compression = params.get("compression")
        if compression is None:
            # pg_dump 15 compresses a directory dump with gzip only.
            compression = "gzip" if self.format == "directory" else "zstd"
        if self.format == "directory" and compression == "zstd":
            raise SafeshipError("compression zstd is not available for format directory (pg_dump compresses "
                                "each file itself, with gzip); use compression gzip or none.")
        self.compression = compression
        level = params.get("compression_level")
        if compression == "none":
            if level is not None:
                raise SafeshipError("compression_level needs compression gzip or zstd.")
        else:
            low, high, default = LEVELS[compression]
            if level is None:
                level = default
            if not low <= level <= high:
                raise SafeshipError("compression_level %d is out of range for %s (%d to %d)."
                                    % (level, compression, low, high))
        self.level = level
        self.jobs = 1 if params.get("jobs") is None else params["jobs"]
        if self.jobs < 1:
            raise SafeshipError("jobs must be 1 or more.")
        if self.jobs > 1 and self.format != "directory":
            raise SafeshipError("jobs > 1 needs format directory (pg_dump dumps in parallel only into a directory).")
        self.tables = list(params.get("tables") or [])
        for table in self.tables:
            split_table_name(table)
        if params.get("keep") is not None and params["keep"] < 1:
            raise SafeshipError("keep must be 1 or more (the backup just written is always kept).")
        default_label = engine.database if name != "sqlite" else os.path.splitext(os.path.basename(engine.database))[0]
        self.label = check_label(params.get("label") or default_label)
        self.dest = params["dest"]
        if not os.path.isabs(self.dest):
            raise SafeshipError("dest %r must be an absolute path." % self.dest)

    @property
    def extension(self):
        if self.format == "directory":
            return ".dir"
        base = {"custom": ".dump", "plain": ".sql", "file": ".sqlite3"}[self.format]
        # pg_dump compresses custom (and plain, through -Z) itself with gzip: the file name stays.
        if self.compression == "zstd":
            return base + ".zst"
        if self.compression == "gzip" and self.format in ("plain", "file"):
            return base + ".gz"
        return base

    def final_path(self, now):
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        base = os.path.join(self.dest, "%s_%s" % (self.label, stamp))
        candidate = base + self.extension
        counter = 1
        while os.path.lexists(candidate) or os.path.lexists(manifest_path_for(candidate)):
            counter += 1
            candidate = "%s-%d%s" % (base, counter, self.extension)
        return candidate


def _compressor(runner, plan):
    if plan.compression == "zstd":
        return [runner.find_binary("zstd", package="zstd"), "-q", "-T0", "-%d" % plan.level, "-c"]
    if plan.compression == "gzip":
        return [runner.find_binary("gzip", package="gzip"), "-c", "-%d" % plan.level]
    return None


def _decompressor(runner, compression):
    if compression == "zstd":
        return [runner.find_binary("zstd", package="zstd"), "-q", "-d", "-c"]
    if compression == "gzip":
        return [runner.find_binary("gzip", package="gzip"), "-d", "-c"]
    return None


def existing_backups(dest, label=None):
    """Manifests (with their backup present) in dest, newest first; label filters."""
    found = []
    for manifest_path in glob.glob(os.path.join(glob.escape(dest), "*" + MANIFEST_SUFFIX)):
        try:
            manifest = read_json(manifest_path)
        except SafeshipError:
            continue
        if not isinstance(manifest, dict) or manifest.get("safeship_manifest") is None:
            continue
        backup_path = manifest_path[:-len(MANIFEST_SUFFIX)]
        if not os.path.lexists(backup_path):
            continue
        if label is not None and manifest.get("label") != label:
            continue
        found.append(((manifest.get("created_at", ""), manifest.get("created_timestamp", 0)), backup_path, manifest))
    found.sort(key=lambda item: item[0], reverse=True)
    return [(path, manifest) for dummy, path, manifest in found]


def remove_stale_partials(dest):
    """Partials whose writer is gone (killed, crashed) are garbage: they never got a final name."""
    removed = []
    for partial in glob.glob(os.path.join(glob.escape(dest), "*.partial")):
        match = re.search(r"\.(\d+)\.partial$", partial)
        if match and not pid_alive(int(match.group(1))):
            remove_path(partial)
            removed.append(partial)
    return removed


def is_disk_full(stderr):
    """ENOSPC as the dump tools report it: strerror, or mysqldump's 'Got errno 28 on write'."""
    text = stderr or ""
    return "No space left on device" in text or "errno 28 " in text


def _check_gzip_file(directory, rel):
    try:
        with gzip.open(os.path.join(directory, rel)) as handle:
            while handle.read(1024 * 1024):
                pass
    except (OSError, IOError, EOFError) as exc:
        raise SafeshipError("%s in the dump does not decompress: %s" % (rel, exc))


def check_gzip_files(directory, names, jobs):
    """Decompress every file to its end; with jobs > 1 in that many threads (zlib releases the GIL),
    as pg_dump --jobs wrote them in parallel."""
    if jobs <= 1 or len(names) <= 1:
        for rel in names:
            _check_gzip_file(directory, rel)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(_check_gzip_file, directory, rel) for rel in names]:
            future.result()


class _PgSnapshot(object):
    """An open REPEATABLE READ transaction whose snapshot pg_dump shares (--snapshot), so the
    row counts in the manifest are exactly the rows in the dump, even while the app writes."""

    def __init__(self, engine):
        self.engine = engine
        argv = engine.psql_argv() + ["-A", "-t"]
        self.proc = engine.runner.spawn(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True,
                                        what="psql (snapshot for pg_dump)")
        try:
            self.snapshot = self._ask("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
                                      "SELECT pg_export_snapshot();")
        except BaseException:
            self.proc.close(stop=True)
            raise

    def _ask(self, sql):
        try:
            self.proc.stdin.write(sql + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (IOError, OSError):
            line = ""
        if not line:
            self.proc.stop()
            err = self.proc.stderr.read()
            raise self.engine.error(err, self.proc.returncode)
        return line.strip()

    def count_rows(self, tables):
        missing = self.engine.missing_tables(tables)
        if missing:
            raise SafeshipError("table(s) %s not found in %s." % (", ".join(missing), self.engine.where()))
        return dict((t, int(self._ask("SELECT count(*) FROM %s;" % self.engine.quote_table(t)))) for t in tables)

    def close(self):
        """COMMIT and let psql end (stopped after 30 s); its pipes are closed either way."""
        with self.proc:
            if self.proc.poll() is None:
                try:
                    self.proc.stdin.write("COMMIT;\n")
                    self.proc.stdin.close()
                except (IOError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=30)
                except CommandError:
                    pass  # stopped: the snapshot's transaction ends with it


class Backup(object):
    def __init__(self, module, engine, runner):
        self.module = module
        self.engine = engine
        self.runner = runner
        self.plan = BackupPlan(engine, module.params)

    # ---- planning -------------------------------------------------------------------------
    def estimate(self):
        """(estimated bytes, how it was estimated)."""
        plan = self.plan
        for path, manifest in existing_backups(plan.dest, plan.label):
            if (manifest.get("format"), manifest.get("compression")) == (plan.format, plan.compression):
                return int(manifest.get("size", 0) * 1.2), "1.2 x the last backup %s" % os.path.basename(path)
        data = self.engine.data_size()
        factor = 1.0 if plan.compression == "none" else 0.5
        if self.engine.name == "sqlite" and plan.compression != "none":
            factor = 1.5  # the uncompressed copy and the compressed file exist side by side for a moment
        return int(data * factor), "%.1f x the database's table data (%s)" % (factor, human_size(data))

    def check_space(self, estimate, how):
        free = free_bytes(self.plan.dest)
        if self.module.params.get("check_space") and free < estimate:
            raise SafeshipError(
                "not enough free space in %s for the backup of %s: about %s needed (%s), %s free. "
                "Free some space, lower 'keep' for older backups, or set check_space: false if the "
                "estimate is wrong." % (self.plan.dest, self.engine.where(), human_size(estimate), how,
                                        human_size(free)),
                needed_bytes=estimate, free_bytes=free)
        return free

    def prepare_dest(self):
        dest = self.plan.dest
        changed = False
        if not os.path.isdir(dest):
            if os.path.lexists(dest):
                raise SafeshipError("dest %s exists and is not a directory." % dest)
            os.makedirs(dest, 0o700)
            changed = True
        if os.stat(dest).st_mode & 0o777 != 0o700:
            os.chmod(dest, 0o700)
            changed = True
        return changed

    # ---- dumping --------------------------------------------------------------------------
    def _pg_dump_argv(self, snapshot):
        plan, engine = self.plan, self.engine
        argv = [engine.binary("pg_dump")] + engine.conn_args() + ["-d", engine.database]
        argv += ["--format=%s" % {"custom": "c", "directory": "d", "plain": "p"}[plan.format]]
        if plan.compression == "gzip":
            argv += ["--compress=%d" % plan.level]
        else:
            argv += ["--compress=0"]
        if plan.jobs > 1:
            argv += ["--jobs=%d" % plan.jobs]
        if snapshot:
            argv += ["--snapshot=%s" % snapshot]
        return argv

    def _dump_postgresql(self, partial):
        plan = self.plan
        snapshot = _PgSnapshot(self.engine) if plan.tables else None
        try:
            counts = snapshot.count_rows(plan.tables) if snapshot else {}
            argv = self._pg_dump_argv(snapshot.snapshot if snapshot else None)
            compressor = _compressor(self.runner, plan) if plan.compression == "zstd" else None
            if compressor:
                self.runner.pipeline([argv, compressor], stdout_path=partial, what="pg_dump")
            else:
                # pg_dump writes the file itself: a seekable custom archive gets data offsets,
                # which pg_restore --jobs needs.
                self.runner.pipeline([argv + ["--file=%s" % partial]], what="pg_dump")
        finally:
            if snapshot:
                snapshot.close()
        return counts, True

    def _dump_mysql(self, partial):
        plan, engine = self.plan, self.engine
        # Counted in a transaction of their own just before the dump: exact unless the
        # application writes to these tables while the backup starts.
        counts = engine.count_rows(plan.tables)
        argv = [engine.dump_binary(), "--defaults-extra-file=%s" % engine.defaults_file(),
                "--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4", "--no-tablespaces"]
        if not engine.is_mariadb():
            argv.append("--set-gtid-purged=OFF")
        argv.append(engine.database)
        compressor = _compressor(self.runner, plan)
        self.runner.pipeline([argv] + ([compressor] if compressor else []), stdout_path=partial,
                             what=os.path.basename(argv[0]))
        return counts, False

    def _dump_sqlite(self, partial):
        plan, engine = self.plan, self.engine
        copy = partial + ".db" if (plan.compression != "none" or plan.format == "plain") else partial
        source = engine.connect_ro()
        try:
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            target = sqlite3.connect(copy)
            try:
                # The online backup API gives a consistent copy while the application writes.
                source.backup(target)
            finally:
                target.close()
        except sqlite3.Error as exc:
            remove_path(copy)
            raise SafeshipError("SQLite backup of %s failed: %s" % (engine.database, exc))
        finally:
            source.close()
        try:
            engine.integrity_check(copy)
            counts = engine.count_rows_in(copy, plan.tables)
            if plan.format == "plain":
                self._sqlite_plain(copy, partial)
            elif copy != partial:
                self.runner.pipeline([_compressor(self.runner, plan)], stdin_path=copy, stdout_path=partial,
                                     what=plan.compression)
                self._sqlite_copy_sha = sha256_file(copy)
        finally:
            if copy != partial:
                remove_path(copy)
        return counts, True

    def _sqlite_plain(self, copy, partial):
        compressor = _compressor(self.runner, self.plan)
        conn = sqlite3.connect("file:%s?mode=ro" % copy, uri=True)
        try:
            if compressor is None:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    for line in conn.iterdump():
                        handle.write(line + "\n")
                return
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                proc = self.runner.spawn(compressor, stdin=PIPE, stdout=fd, stderr=PIPE, what=self.plan.compression)
            finally:
                os.close(fd)
            with proc:
                try:
                    for line in conn.iterdump():
                        proc.stdin.write((line + "\n").encode("utf-8"))
                    proc.stdin.close()
                except (IOError, OSError):
                    pass  # the compressor stopped reading: its exit code and stderr say why
                err = proc.stderr.read()
                proc.wait()
                proc.check(err)
        finally:
            conn.close()

    # ---- verification ---------------------------------------------------------------------
    def _read_stream_tail(self, path, compression):
        """Decompress (if needed) the whole file; return its last bytes and the digest of the
        uncompressed stream. Proves a compressed stream decompresses to its end."""
        tail = [b""]
        digest = hashlib.sha256()

        def keep(chunk):
            digest.update(chunk)
            tail[0] = (tail[0] + chunk)[-TAIL_BYTES:]

        decompressor = _decompressor(self.runner, compression)
        if decompressor is None:
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1024 * 1024), b""):
                    keep(chunk)
        else:
            self.runner.pipeline([decompressor], stdin_path=path, consumer=keep,
                                 what="%s (verifying %s)" % (compression, os.path.basename(path)))
        return tail[0], digest.hexdigest()

    def _pg_toc(self, path):
        """(TOC entry count from the archive header, listed entries) from pg_restore --list."""
        plan = self.plan
        listing = []
        pg_restore = self.engine.binary("pg_restore")
        if plan.compression == "zstd":
            zstd = _decompressor(self.runner, "zstd")
            self.runner.run([zstd[0], "-q", "-t", path], what="zstd (testing %s)" % os.path.basename(path))
            self.runner.pipeline([zstd, [pg_restore, "--list"]], stdin_path=path, consumer=listing.append,
                                 tolerate_sigpipe=True, what="pg_restore --list")
            text = b"".join(listing).decode("utf-8", "replace")
        else:
            text = self.runner.run([pg_restore, "--list", path], what="pg_restore --list")[1]
        header = re.search(r"^;\s+TOC Entries: (\d+)", text, re.M)
        entries = [line for line in text.splitlines() if line.strip() and not line.startswith(";")]
        # An empty database lists no entries but its archive still holds ENCODING, STDSTRINGS...
        return int(header.group(1)) if header else 0, entries

    def verify(self, partial):
        """Raise unless the partial backup is complete and readable. Returns what was checked."""
        plan, engine = self.plan, self.engine
        if engine.name == "postgresql" and plan.format in ("custom", "directory"):
            count, toc = self._pg_toc(partial)
            if not count:
                raise SafeshipError("pg_restore --list found no entries in the archive: the dump is empty or broken.")
            data = set()
            for line in toc:
                match = re.search(r"\bTABLE DATA (\S+) (\S+)", line)
                if match:
                    data.add((match.group(1), match.group(2)))
            absent = []
            for table in plan.tables:
                schema, name = split_table_name(table)
                if not any(n == name and (schema is None or s == schema) for s, n in data):
                    absent.append(table)
            if absent:
                raise SafeshipError("the archive has no data for table(s) %s." % ", ".join(absent))
            if plan.format == "directory" and plan.compression == "gzip":
                check_gzip_files(partial, sorted(f for f in os.listdir(partial) if f.endswith(".gz")), plan.jobs)
            return {"method": "pg_restore --list", "toc_entries": count}
        if engine.name == "sqlite" and plan.format == "file":
            if plan.compression == "none":
                return {"method": "PRAGMA integrity_check"}
            tail, digest = self._read_stream_tail(partial, plan.compression)
            if digest != self._sqlite_copy_sha:
                raise SafeshipError("the compressed SQLite copy does not decompress to the checked database.")
            return {"method": "PRAGMA integrity_check, %s decompresses to the checked copy" % plan.compression}
        trailer = {"postgresql": PG_TRAILER, "mysql": MYSQL_TRAILER, "sqlite": SQLITE_PLAIN_TRAILER}[engine.name]
        tail, digest = self._read_stream_tail(partial, plan.compression)
        if trailer not in tail:
            raise SafeshipError("the dump does not end with its completion line (%r): it is truncated."
                                % trailer.decode())
        stream = "" if plan.compression == "none" else ", %s stream decompresses" % plan.compression
        return {"method": "completion trailer%s" % stream, "uncompressed_sha256": digest}

    # ---- the whole thing ------------------------------------------------------------------
    def run(self):
        plan, engine, module = self.plan, self.engine, self.module
        now = utc_now()
        server_version = engine.server_version()
        estimate, how = self.estimate()
        final = plan.final_path(now)
        free = self.check_space(estimate, how)
        result = dict(path=final, manifest_path=manifest_path_for(final), estimated_size=estimate,
                      free_space=free, label=plan.label, format=plan.format, compression=plan.compression)
        if module.check_mode:
            result.update(changed=True, msg="would write %s (about %s; %s free)" % (
                final, human_size(estimate), human_size(free)))
            return result

        self.prepare_dest()
        result["removed_partials"] = remove_stale_partials(plan.dest)
        partial = "%s.%d.partial" % (final, os.getpid())
        started = time.time()
        try:
            dump = {"postgresql": self._dump_postgresql, "mysql": self._dump_mysql,
                    "sqlite": self._dump_sqlite}[engine.name]
            counts, consistent = dump(partial)
            verified = self.verify(partial)
            chmod_private(partial)
            if os.path.isdir(partial):
                sha256, files = sha256_tree(partial)
                fsync_tree(partial)
            else:
                # An uncompressed dump was already read and hashed whole by verify(): don't read it again.
                sha256 = verified.get("uncompressed_sha256") if plan.compression == "none" else None
                sha256, files = sha256 or sha256_file(partial), None
                fsync_path(partial)
            size = path_size(partial)
            os.rename(partial, final)
            fsync_path(plan.dest)
        except OSError as exc:
            remove_path(partial)
            raise SafeshipError("writing the backup %s failed: %s" % (partial, exc.strerror or exc))
        except BaseException as exc:
            remove_path(partial)
            if isinstance(exc, CommandError) and is_disk_full(exc.stderr):
                raise SafeshipError("the disk holding %s filled up while writing the backup (No space left on "
                                    "device): %s. Nothing was kept under the backup's name." % (plan.dest, exc.msg),
                                    **exc.details)
            raise
        duration = round(time.time() - started, 3)
        manifest = {
            "safeship_manifest": MANIFEST_VERSION,
            "engine": engine.name,
            "server_version": server_version,
            "database": engine.database,
            "encoding": engine.encoding(),
            "label": plan.label,
            "format": plan.format,
            "compression": plan.compression,
            "compression_level": plan.level,
            "jobs": plan.jobs,
            "file": os.path.basename(final),
            "size": size,
            "sha256": sha256,
            "duration": duration,
            "tables": counts,
            "row_counts_consistent": consistent,
            "created_at": iso(now),
            "created_timestamp": started,
            "host": socket.gethostname(),
            "verified": verified,
        }
        if files is not None:
            manifest["files"] = files
        try:
            write_json_atomic(manifest_path_for(final), manifest)
        except BaseException:
            # A backup without its manifest cannot be restored safely: don't leave it looking final.
            remove_path(final)
            raise
        result.update(changed=True, path=final, size=size, sha256=sha256, manifest=manifest, duration=duration,
                      deleted=self.apply_retention(final))
        return result

    def apply_retention(self, just_written):
        keep = self.module.params.get("keep")
        if not keep:
            return []
        deleted = []
        for index, (path, manifest) in enumerate(existing_backups(self.plan.dest, self.plan.label)):
            if index < keep or path == just_written:
                continue
            remove_path(path)
            remove_path(manifest_path_for(path))
            deleted.append(path)
        return deleted


def run(module, runner):
    """The db_backup module's action."""
    return Backup(module, connect(module.params, runner), runner).run()
