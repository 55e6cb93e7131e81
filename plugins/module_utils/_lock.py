# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the deploy lock (a JSON file published atomically) used by the deploy_lock module.

Private: the interface may change without notice; only this collection's modules use it.

How the lock stays race-free:

* Acquiring a free lock writes the complete JSON document to a temporary file in the lock's directory and
  hard-links it to the lock path. link() fails with EEXIST when the path exists, so exactly one of any number of
  concurrent acquirers wins, and no reader ever sees a half-written lock.
* Everything that replaces or removes an existing lock file (breaking a stale lock, renewing or releasing one's
  own) first takes an flock on a hidden guard file next to it (``.<name>.guard``), re-reads the lock and proceeds
  only if it is byte for byte what it decided on. Creating is the only change made without the guard, and it can
  only happen while the path is empty, so under the guard the file read is the file moved.
* Breaking a stale lock moves it aside under a unique name and then publishes the new lock with link(): if a plain
  acquirer slipped in between, the breaker loses like any other acquirer. Two breakers: the second one sees the
  first one's fresh lock when it re-reads under the guard, and fails naming it.

The lock file stores the sha256 of the token, never the token, so it can stay readable (0644) for whoever wants to
know who holds it without letting them release it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import socket

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    fsync_path,
    human_duration,
    iso,
    pid_alive,
    remove_path,
    utc_now,
)

LOCK_FORMAT = 1
LOCK_MODE = 0o644
# The lock's own directory, created when missing, and any missing directory above it (as the release module
# creates an application root: the web user can still enter it).
LOCK_DIR_MODE = 0o750
PARENT_DIR_MODE = 0o755
RETRIES = 20

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_TOKEN = re.compile(r"^[\x21-\x7e]{8,256}$")
# what the module returns about a holder (the lock file holds these plus the token's sha256)
PUBLIC_FIELDS = ("owner", "user", "host", "pid", "playbook", "reason", "started", "expires", "ttl")


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def parse_ttl(value):
    """Seconds from an int, a digit string or a duration such as '2h', '90m', '1h30m', '1d', '45s'; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SafeshipError("ttl %r is not a duration: use seconds (7200) or a duration such as '2h' or '1h30m'."
                            % (value,))
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text.isdigit():
            seconds = int(text)
        else:
            match = _DURATION.match(text)
            if not text or not match or not any(match.groups()):
                raise SafeshipError("ttl %r is not a duration: use seconds (7200) or a duration such as '2h', '90m' "
                                    "or '1h30m' (units d, h, m, s)." % (value,))
            days, hours, minutes, secs = [int(g or 0) for g in match.groups()]
            seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise SafeshipError("ttl %r must be more than 0 seconds." % (value,))
    return seconds


def parse_time(text):
    """Parse the lock's '%Y-%m-%dT%H:%M:%SZ' timestamps; None on anything else."""
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def this_host():
    return socket.gethostname()


def login_user():
    """The user who ran the task: SUDO_USER (the login user when become used sudo), else the effective user."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def token_digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token():
    return secrets.token_hex(20)


# ---------------------------------------------------------------------------------------------------------------
# processes (Linux /proc; elsewhere only "is the pid alive" is known)


def _proc_stat(pid):
    """(ppid, start time in clock ticks) of a process from /proc, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = data[data.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_argv(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            data = handle.read()
    except (IOError, OSError):
        return []
    return [arg.decode("utf-8", "replace") for arg in data.split(b"\0") if arg]


def process_start(pid):
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_running(pid, start=None):
    """Whether pid runs here and, when its start time was recorded, is still the same process (not a reused pid)."""
    if not pid or not pid_alive(pid):
        return False
    if start is not None:
        current = process_start(pid)
        if current is not None and current != start:
            return False
    return True


def _is_playbook(argv):
    return any(os.path.basename(arg).startswith("ansible-playbook") for arg in argv[:2])


def find_playbook_pid(start_pid=None, max_depth=64):
    """The pid of the ansible-playbook process this module runs under, when it runs on the same host (a lock on the
    controller, through delegate_to: localhost or a local connection); None on a managed host reached over SSH.

    ansible-playbook runs each task in a worker process forked from the main process (same command line), so this
    walks up the parents to the first ansible-playbook process and returns the outermost of that unbroken run of
    ansible-playbook processes: the main one, which lives as long as the play."""
    pid = start_pid or os.getpid()
    found = None
    for dummy in range(max_depth):
        stat = _proc_stat(pid)
        if stat is None:
            break
        ppid = stat[0]
        if ppid <= 1:
            break
        if _is_playbook(_proc_argv(ppid)):
            found = ppid
        elif found is not None:
            break
        pid = ppid
    return found


# ---------------------------------------------------------------------------------------------------------------
# the lock file


class LockFile(object):
    """What is at the lock path: its raw bytes and, when valid, the parsed document."""

    def __init__(self, raw):
        self.raw = raw
        self.doc = None
        self.problem = None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            self.problem = "it is not valid JSON (%s)" % exc
            return
        if not isinstance(doc, dict) or doc.get("safeship_lock") != LOCK_FORMAT or not doc.get("token_sha256"):
            self.problem = "it is not a safeship.webapp deploy lock"
            return
        self.doc = doc

    def holder(self):
        if self.doc is None:
            return {"owner": None, "invalid": self.problem}
        return dict((key, self.doc.get(key)) for key in PUBLIC_FIELDS)

    def matches(self, token):
        if self.doc is None or not token:
            return False
        return hmac.compare_digest(str(self.doc.get("token_sha256")), token_digest(token))

    def started(self):
        return parse_time(self.doc.get("started")) if self.doc else None

    def expires(self):
        return parse_time(self.doc.get("expires")) if self.doc else None

    def age(self, now):
        return _age(self.doc, now) if self.doc else None

    def stale_reasons(self, now, host):
        """Why this lock no longer protects anything (empty when it is live)."""
        if self.doc is None:
            return []
        reasons = []
        expires = self.expires()
        if expires is not None and now >= expires:
            ago = human_duration((now - expires).total_seconds())
            reasons.append("it expired at %s (%s ago)" % (self.doc["expires"], ago))
        pid = self.doc.get("pid")
        if pid and self.doc.get("host") == host and not process_running(pid, self.doc.get("pid_start")):
            reasons.append("its process %s is no longer running on %s" % (pid, host))
        return reasons


def read_lock(path):
    try:
        with open(path, "rb") as handle:
            return LockFile(handle.read())
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno == errno.EISDIR:
            raise SafeshipError("lock path %s is a directory; give the path of a file." % path)
        raise SafeshipError("cannot read the lock %s: %s" % (path, exc.strerror or exc))


def describe(lock, now):
    """'alice@ctl (host app1, pid 42, playbook deploy.yml) since 2024-...Z (5m ago), reason: 'x'' for messages."""
    if lock.doc is None:
        return "an unknown holder: the file is not a valid lock (%s)" % lock.problem
    doc = lock.doc
    where = ["host %s" % doc.get("host")]
    if doc.get("pid"):
        where.append("pid %s" % doc["pid"])
    if doc.get("user") and doc.get("user") not in str(doc.get("owner")):
        where.append("user %s" % doc["user"])
    if doc.get("playbook"):
        where.append("playbook %s" % doc["playbook"])
    text = "%s (%s) since %s" % (doc.get("owner"), ", ".join(where), doc.get("started"))
    age = lock.age(now)
    if age is not None:
        text += " (%s ago)" % human_duration(age)
    if doc.get("reason"):
        text += ", reason: %r" % (doc["reason"],)
    return text


# ---------------------------------------------------------------------------------------------------------------
# changing the lock file


class _Guard(object):
    """flock on '<dir>/.<name>.guard' around every replacement or removal of the lock file.

    Held for milliseconds; the kernel drops it when the process ends, so it can never be left behind. The empty
    guard file stays (removing it would let two processes lock two different files)."""

    def __init__(self, path):
        directory, name = os.path.split(path)
        self.path = os.path.join(directory, ".%s.guard" % name)
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
        except OSError as exc:
            raise SafeshipError("cannot open %s: %s" % (self.path, exc.strerror or exc))
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        os.close(self.fd)
        return False


def _sibling(path, suffix):
    directory, name = os.path.split(path)
    return os.path.join(directory, ".%s.%d.%s.%s" % (name, os.getpid(), secrets.token_hex(4), suffix))


def _write_temp(path, doc):
    """The complete lock document in a new file next to path (fsynced, mode 0644); returns its name."""
    tmp = _sibling(path, "tmp")
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SafeshipError("cannot create a file in %s: %s" % (os.path.dirname(path), exc.strerror or exc))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, LOCK_MODE)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_path(tmp)
        raise
    os.close(fd)
    return tmp


def publish(path, doc):
    """Create the lock file with doc, all or nothing; False when the path already exists (someone holds it)."""
    tmp = _write_temp(path, doc)
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise SafeshipError("the filesystem holding %s does not support hard links, which the lock needs to be "
                                "created atomically; put the lock on a local filesystem." % path)
        raise SafeshipError("cannot create the lock %s: %s" % (path, exc.strerror or exc))
    finally:
        remove_path(tmp)
    fsync_path(os.path.dirname(path))
    return True


def replace(path, doc):
    """Replace the lock file (held by us, under the guard) with doc, atomically."""
    tmp = _write_temp(path, doc)
    try:
        os.rename(tmp, path)
    except OSError as exc:
        remove_path(tmp)
        raise SafeshipError("cannot update the lock %s: %s" % (path, exc.strerror or exc))
    fsync_path(os.path.dirname(path))


def take_away(path, expected_raw):
    """Under the guard: move the lock file aside and return True if it held expected_raw; otherwise put it back and
    return False. Whatever was taken away is removed."""
    aside = _sibling(path, "old")
    try:
        os.rename(path, aside)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise SafeshipError("cannot move the lock %s: %s" % (path, exc.strerror or exc))
    try:
        with open(aside, "rb") as handle:
            moved = handle.read()
        if moved != expected_raw:
            # changed by something that does not take the guard: give it back untouched
            try:
                os.link(aside, path)
            except OSError:
                pass
            return False
        return True
    finally:
        remove_path(aside)
        fsync_path(os.path.dirname(path))


# ---------------------------------------------------------------------------------------------------------------
# the module's work


class DeployLock(object):
    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.path = params["path"]
        self.host = this_host()
        self.created = []

    def run(self):
        if not os.path.isabs(self.path):
            raise SafeshipError("path %r must be an absolute path." % (self.path,))
        if os.path.isdir(self.path):
            raise SafeshipError("lock path %s is a directory; give the path of a file." % self.path)
        if self.params["state"] == "released":
            return self.release()
        return self.acquire()

    # --- acquire ------------------------------------------------------------------------------------------------

    def _check_inputs(self):
        token = self.params.get("token")
        if token is not None and not _TOKEN.match(token):
            raise SafeshipError("token must be 8 to 256 printable characters without spaces.")
        for key in ("owner", "playbook", "reason"):
            value = self.params.get(key)
            if value is not None and (not value.strip() or "\n" in value or len(value) > 500):
                raise SafeshipError("%s must be one non-empty line of at most 500 characters." % key)
        pid = self.params.get("pid")
        if pid is not None and (pid <= 0 or not pid_alive(pid)):
            raise SafeshipError("pid %s is not a running process on %s: give the pid of a process on the host that "
                                "holds the lock and lives as long as the deploy (or leave pid unset)."
                                % (pid, self.host))

    def _process(self):
        pid = self.params.get("pid")
        if pid is None:
            pid = find_playbook_pid()
        if pid is None:
            return None, None
        return pid, process_start(pid)

    def _ensure_directory(self):
        """Create the missing directories of the lock path, top down: the lock's own one with LOCK_DIR_MODE,
        those above it with PARENT_DIR_MODE; existing ones stay as they are. In check mode, only say which."""
        directory = os.path.dirname(self.path)
        missing = []
        probe = directory
        while not os.path.isdir(probe):
            if os.path.lexists(probe):
                raise SafeshipError("%s exists and is not a directory, so the lock %s cannot be created there."
                                    % (probe, self.path))
            missing.insert(0, probe)
            probe = os.path.dirname(probe)
        if self.check_mode:
            self.created = missing
            return
        for path in missing:
            try:
                os.mkdir(path)
            except OSError as exc:
                if exc.errno == errno.EEXIST and os.path.isdir(path):
                    continue  # created by a concurrent run a moment ago: left as it is
                raise SafeshipError("cannot create %s: %s" % (path, exc.strerror or exc))
            # chmod, not mkdir's mode: the module's umask (077) would take the group and others' bits away
            os.chmod(path, LOCK_DIR_MODE if path == directory else PARENT_DIR_MODE)
            self.created.append(path)

    def _new_doc(self, token, ttl, pid, pid_start, now):
        owner = self.params.get("owner") or "%s@%s" % (login_user(), self.host)
        return {
            "safeship_lock": LOCK_FORMAT,
            "owner": owner,
            "user": login_user(),
            "host": self.host,
            "pid": pid,
            "pid_start": pid_start,
            "playbook": self.params.get("playbook"),
            "reason": self.params.get("reason"),
            "started": iso(now),
            "expires": iso(now + datetime.timedelta(seconds=ttl)) if ttl else None,
            "ttl": ttl,
            "token_sha256": token_digest(token),
        }

    def acquire(self):
        self._check_inputs()
        ttl = parse_ttl(self.params.get("ttl"))
        pid, pid_start = self._process()
        given_token = self.params.get("token")
        token = given_token or new_token()
        self._ensure_directory()
        for dummy in range(RETRIES):
            now = utc_now()
            current = read_lock(self.path)
            doc = self._new_doc(token, ttl, pid, pid_start, now)
            if current is None:
                if self.check_mode:
                    return self._result(True, doc, now, token=given_token, before=None,
                                        msg="the lock would be acquired")
                if publish(self.path, doc):
                    return self._result(True, doc, now, token=token, before=None, msg="lock acquired")
                continue  # taken a moment ago: read who has it
            if given_token and current.matches(given_token):
                result = self._renew(current, ttl, pid, pid_start, now)
                if result is not None:
                    return result
                continue
            if current.doc is None:
                raise SafeshipError(
                    "deploy lock %s exists but is not a valid lock: %s. Nothing was changed; look at the file, then "
                    "remove it or release it with force: true." % (self.path, current.problem),
                    **self._holder_details(current, now))
            stale = current.stale_reasons(now, self.host)
            if not stale:
                raise SafeshipError(self._held_message(current, now), **self._holder_details(current, now))
            if not self.params.get("break_stale"):
                raise SafeshipError(
                    "deploy lock %s is stale: held by %s, but %s. Nothing was changed; set break_stale: true to "
                    "break it and take the lock." % (self.path, describe(current, now), " and ".join(stale)),
                    **self._holder_details(current, now, stale))
            broken = dict(current.holder(), stale=stale)
            if self.check_mode:
                return self._result(True, doc, now, token=given_token, before=current, broken=broken,
                                    msg="the stale lock would be broken and the lock acquired")
            if self._break(current, doc):
                return self._result(True, doc, now, token=token, before=current, broken=broken,
                                    msg="stale lock broken, lock acquired")
        raise SafeshipError("deploy lock %s kept changing while acquiring it (%d attempts); try again."
                            % (self.path, RETRIES))

    def _renew(self, current, ttl, pid, pid_start, now):
        """Re-acquire with the holder's token: nothing to do, or update reason/owner/playbook/pid/ttl (expiry only
        ever moves later). None: the file changed under us, start over."""
        doc = dict(current.doc)
        for key in ("owner", "playbook", "reason"):
            if self.params.get(key) is not None:
                doc[key] = self.params[key]
        if pid is not None:
            doc["pid"], doc["pid_start"] = pid, pid_start
        if ttl is not None:
            doc["ttl"] = ttl
        if doc.get("ttl"):
            length = datetime.timedelta(seconds=doc["ttl"])
            candidates = [current.started() + length]
            if current.expires() is not None:
                candidates.append(current.expires())
            expires = max(candidates)
            if expires <= now:  # our own lock had expired: it runs again from now
                expires = now + length
            doc["expires"] = iso(expires)
        if doc == current.doc:
            return self._result(False, doc, now, token=self.params["token"], before=current,
                                msg="lock already held with this token")
        if self.check_mode:
            return self._result(True, doc, now, token=self.params["token"], before=current,
                                msg="the lock held with this token would be updated")
        with _Guard(self.path):
            again = read_lock(self.path)
            if again is None or again.raw != current.raw:
                return None
            replace(self.path, doc)
        return self._result(True, doc, now, token=self.params["token"], before=current,
                            msg="lock held with this token updated")

    def _break(self, current, doc):
        with _Guard(self.path):
            again = read_lock(self.path)
            if again is None or again.raw != current.raw:
                return False  # someone else broke or released it first
            if not take_away(self.path, current.raw):
                return False
            return publish(self.path, doc)

    def _held_message(self, current, now):
        text = "deploy lock %s is held by %s." % (self.path, describe(current, now))
        expires = current.expires()
        if expires is not None:
            text += " It expires at %s (in %s); after that, break_stale: true breaks it." % (
                current.doc["expires"], human_duration((expires - now).total_seconds()))
        else:
            text += " It has no expiry."
        if current.doc.get("pid") and current.doc.get("host") != self.host:
            text += " Its process runs on %s and cannot be checked from %s." % (current.doc["host"], self.host)
        return text + (" Wait for that run to finish; if it is gone, release the lock with state: released and "
                       "force: true.")

    # --- release ------------------------------------------------------------------------------------------------

    def release(self):
        token = self.params.get("token")
        force = self.params.get("force")
        for dummy in range(RETRIES):
            now = utc_now()
            current = read_lock(self.path)
            if current is None:
                return dict(changed=False, path=self.path, msg="the lock is not held", token=None, holder=None,
                            age=None, expires=None, broken=None, created_directories=[])
            if not force and not current.matches(token):
                if current.doc is None:
                    msg = ("deploy lock %s exists but is not a valid lock: %s. Nothing was released; look at the "
                           "file, then remove it or release it with force: true." % (self.path, current.problem))
                elif token:
                    msg = ("deploy lock %s is held by %s, and the token given is not the one it was acquired with "
                           "(was this run's lock broken as stale and taken by another run?). Nothing was released; "
                           "force: true releases it anyway." % (self.path, describe(current, now)))
                else:
                    msg = ("deploy lock %s is held by %s; releasing it needs the token returned when it was acquired "
                           "(token), or force: true." % (self.path, describe(current, now)))
                raise SafeshipError(msg, **self._holder_details(current, now))
            if self.check_mode:
                return self._released(current, now, "the lock would be released")
            with _Guard(self.path):
                again = read_lock(self.path)
                if again is None or again.raw != current.raw or not take_away(self.path, current.raw):
                    continue
            return self._released(current, now, "lock released")
        raise SafeshipError("deploy lock %s kept changing while releasing it (%d attempts); try again."
                            % (self.path, RETRIES))

    # --- results ------------------------------------------------------------------------------------------------

    def _holder_details(self, lock, now, stale=None):
        return dict(path=self.path, holder=lock.holder(), age=lock.age(now),
                    expires=lock.doc.get("expires") if lock.doc else None, stale=stale or [])

    def _diff(self, before, after):
        def text(holder):
            return json.dumps(holder, indent=2, sort_keys=True) + "\n" if holder else ""
        return dict(before_header=self.path, after_header=self.path, before=text(before), after=text(after))

    def _result(self, changed, doc, now, token=None, before=None, broken=None, msg=None):
        holder = dict((key, doc.get(key)) for key in PUBLIC_FIELDS)
        result = dict(changed=changed, path=self.path, msg=msg, token=token, holder=holder,
                      age=_age(doc, now), expires=doc.get("expires"), broken=broken,
                      created_directories=list(self.created))
        if self.diff:
            result["diff"] = self._diff(before.holder() if before is not None else None, holder)
        return result

    def _released(self, lock, now, msg):
        result = dict(changed=True, path=self.path, msg=msg, token=None, holder=lock.holder(), age=lock.age(now),
                      expires=lock.doc.get("expires") if lock.doc else None, broken=None, created_directories=[])
        if self.diff:
            result["diff"] = self._diff(lock.holder(), None)
        return result


def _age(doc, now):
    started = parse_time(doc.get("started"))
    return int((now - started).total_seconds()) if started else None


def argument_spec():
    return dict(
        path=dict(type="path", required=True),
        state=dict(type="str", choices=["acquired", "released"], default="acquired"),
        owner=dict(type="str"),
        reason=dict(type="str"),
        playbook=dict(type="str"),
        ttl=dict(type="raw"),
        pid=dict(type="int"),
        token=dict(type="str", no_log=False),
        break_stale=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
    )


def run(module, runner=None):
    """The deploy_lock module's action (it runs no program: runner is unused)."""
    return manage(module.params, check_mode=module.check_mode, diff=module._diff)


def manage(params, check_mode=False, diff=False):
    """Acquire or release the lock with these parameters; return the result."""
    return DeployLock(params, check_mode=check_mode, diff=diff).run()
