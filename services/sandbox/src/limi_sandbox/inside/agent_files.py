"""The file tools of the in-sandbox agent: read, write, edit, list, search, tar upload and download.

Every path is relative to the workspace and resolved one component at a time with `lstat` and
`readlink`: a symbolic link is followed only while it stays inside the workspace (a link to
`/etc/passwd` or `../..` is refused), and the final open uses O_NOFOLLOW and O_NONBLOCK (no
FIFO can hang a call) and checks it got a regular file. This is policy, not the boundary: it
runs inside the sandbox, so a race that swaps a link reaches only what the sandbox could reach
anyway. Archives are extracted member by member with the same checks and byte/file caps (no
absolute names, no `..`, no device files, links only inside the workspace). Search runs `grep -E`
as a child with CPU, memory and time limits (no regex can stall the agent), and a search cut short
by one of them says so (`truncated`, `cut_short`). Results that can be long (entries, matches) go
in the frame's body as JSON, so that headers stay small. Standard library only, Python 3.9+.
"""

import errno
import io
import json
import os
import posixpath
import resource
import signal
import stat
import subprocess
import tarfile
import threading

WORKSPACE = os.environ.get("LIMI_WORKSPACE", "/workspace")
MAX_LINKS = 40
SEARCH_LINE_BYTES = 400
# The most a list or search answer's JSON body holds; more entries or matches are cut (truncated).
MAX_ANSWER_BYTES = 4 << 20


class ToolError(Exception):
    def __init__(self, code, field, message):
        Exception.__init__(self, message)
        self.code, self.field, self.message = code, field, message


def os_error(exc, path):
    """The typed error for an OSError on `path`."""
    codes = {
        errno.ENOENT: ("not_found", "%s does not exist"),
        errno.EISDIR: ("failed_precondition", "%s is a directory"),
        errno.ENOTDIR: ("failed_precondition", "a parent of %s is not a directory"),
        errno.ELOOP: ("invalid_argument", "%s is a symbolic link"),
        errno.EACCES: ("failed_precondition", "permission denied on %s"),
        errno.EPERM: ("failed_precondition", "permission denied on %s"),
        errno.ENOSPC: ("resource_exhausted", "the workspace is full while writing %s"),
        errno.EDQUOT: ("resource_exhausted", "the workspace is full while writing %s"),
        errno.EFBIG: ("resource_exhausted", "%s would exceed the file size limit"),
        errno.EEXIST: ("failed_precondition", "%s already exists"),
        errno.ENAMETOOLONG: ("invalid_argument", "a name in %s is too long"),
        errno.EROFS: ("failed_precondition", "%s is on a read-only filesystem"),
    }
    code, message = codes.get(exc.errno, ("failed_precondition", "%%s: %s" % os.strerror(exc.errno or 0)))
    return ToolError(code, "path", message % (path or "."))


def resolve(path, follow_final=True):
    """The absolute path of `path` (relative to the workspace) with its links resolved inside it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved, links = [], 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if not resolved:
                raise ToolError("invalid_argument", "path", "%s leaves the workspace" % path)
            resolved.pop()
            continue
        candidate = os.path.join(WORKSPACE, *(resolved + [name]))
        try:
            mode = os.lstat(candidate).st_mode
        except FileNotFoundError:
            resolved.append(name)
            continue
        except OSError as exc:
            raise os_error(exc, path)
        if stat.S_ISLNK(mode) and (parts or follow_final):
            links += 1
            if links > MAX_LINKS:
                raise ToolError("invalid_argument", "path", "%s has too many levels of symbolic links" % path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                if target != WORKSPACE and not target.startswith(WORKSPACE + "/"):
                    raise ToolError(
                        "invalid_argument", "path", "%s goes through a symbolic link that leaves the workspace" % path
                    )
                resolved, target = [], target[len(WORKSPACE) :]
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(name)
    return os.path.join(WORKSPACE, *resolved)


def relative(real):
    return posixpath.relpath(real, WORKSPACE)


def printable(name):
    """A file name as UTF-8 text: bytes that are not UTF-8 become U+FFFD (JSON would carry them as lone surrogates)."""
    return os.fsencode(name).decode("utf-8", "replace")


def open_regular(real, flags, path, mode=0o644):
    try:
        fd = os.open(real, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise os_error(exc, path)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolError("failed_precondition", "path", "%s is not a regular file" % path)
    return fd


def make_parents(real, path):
    parent = os.path.dirname(real)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, path)


def read_file(h, body):
    path, offset, limit = h["path"], int(h.get("offset", 0)), int(h["limit"])
    fd = open_regular(resolve(path), os.O_RDONLY, path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        handle.seek(offset)
        content = handle.read(limit)
    return {"size": size, "truncated": offset + len(content) < size}, content


def write_bytes(real, path, content, mode=None):
    """Write `content` (bytes, or a binary file object read in chunks) to a regular file."""
    make_parents(real, path)
    fd = open_regular(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, path, 0o644 if mode is None else mode)
    source = io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content
    total = 0
    try:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            total += len(chunk)
        if mode is not None:
            os.fchmod(fd, mode)
    except OSError as exc:
        raise os_error(exc, path)
    finally:
        os.close(fd)
    return total


def write_file(h, body):
    mode = h.get("mode")
    return {
        "bytes_written": write_bytes(resolve(h["path"]), h["path"], body, (int(mode) & 0o777) if mode else None)
    }, b""


def edit_file(h, body):
    """Replace the one occurrence of old_text; the body is old_text then new_text (UTF-8), split at old_bytes."""
    path, max_bytes, split = h["path"], int(h["max_bytes"]), int(h["old_bytes"])
    old, new = body[:split], body[split:]
    real = resolve(path)
    fd = open_regular(real, os.O_RDONLY, path)
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ToolError(
            "failed_precondition", "path", "%s is larger than %d bytes; edit it with a command" % (path, max_bytes)
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("failed_precondition", "path", "%s is not UTF-8 text" % path)
    # Valid UTF-8 on both sides: a byte match is a character match, and bytes avoid decoding copies.
    count = raw.count(old)
    if count == 0:
        raise ToolError("failed_precondition", "old_text", "old_text was not found in %s" % path)
    if count > 1:
        raise ToolError(
            "failed_precondition",
            "old_text",
            "old_text matches %d times in %s; include more context so that it matches once" % (count, path),
        )
    size = len(raw) - len(old) + len(new)
    if size > max_bytes:
        raise ToolError(
            "invalid_argument",
            "new_text",
            "the edited %s would be %d bytes, more than the %d bytes EditFile works on; "
            "write it with WriteFile" % (path, size, max_bytes),
        )
    write_bytes(real, path, raw.replace(old, new, 1))
    return {"replacements": 1}, b""


def list_dir(h, body):
    path, limit = h.get("path", ""), int(h["max_entries"])
    real = resolve(path)
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        raise os_error(exc, path)
    answer = JsonList()
    for name in names[:limit]:
        try:
            info = os.lstat(os.path.join(real, name))
        except OSError:
            continue
        if not answer.add(
            {
                "name": printable(name),
                "is_dir": stat.S_ISDIR(info.st_mode),
                "is_symlink": stat.S_ISLNK(info.st_mode),
                "size": info.st_size,
            }
        ):
            break
    return {"truncated": len(names) > limit or answer.full}, answer.encode()


def search(h, body):
    """`grep -rnIE` below `path`: (relative path, line number, text) per match, at most max_results."""
    path, pattern, max_results = h.get("path", ""), h["pattern"], int(h["max_results"])
    real = resolve(path)
    if not os.path.exists(real):
        raise ToolError("not_found", "path", "%s does not exist" % (path or "."))
    limits = h.get("limits") or {}
    # One match more than asked for per file tells whether the answer was cut.
    # --line-buffered: matches found before a limit stops grep still reach us.
    argv = [
        "grep",
        "-rsnIEZ",
        "--line-buffered",
        "--exclude-dir=.git",
        "-m",
        str(max_results + 1),
        "-e",
        pattern,
        "--",
        real,
    ]

    def limited():
        os.setpgrp()
        resource.setrlimit(resource.RLIMIT_CPU, (int(limits.get("cpu", 10)), int(limits.get("cpu", 10)) + 1))
        if limits.get("as"):
            resource.setrlimit(resource.RLIMIT_AS, (int(limits["as"]), int(limits["as"])))

    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=WORKSPACE,
            preexec_fn=limited,
        )
    except OSError as exc:
        raise ToolError("failed_precondition", "pattern", "grep cannot run in this sandbox: %s" % exc)
    expired = threading.Event()

    def expire():
        expired.set()
        kill_group(process.pid)

    timer = threading.Timer(float(h.get("timeout", 20)), expire)
    timer.start()
    matches, truncated = JsonList(), False
    try:
        while True:
            line = process.stdout.readline(64 * 1024)
            if not line:
                break
            if not line.endswith(b"\n"):
                while True:  # an enormous line: keep the start, skip the rest
                    rest = process.stdout.readline(64 * 1024)
                    if not rest or rest.endswith(b"\n"):
                        break
            name, _, numbered = line.partition(b"\0")
            number, _, text = numbered.partition(b":")
            if len(matches.items) >= max_results or not matches.add(
                {
                    "path": printable(relative(os.fsdecode(name))),
                    "line": int(number or 0),
                    "text": text[:SEARCH_LINE_BYTES].rstrip(b"\n").decode("utf-8", "replace"),
                }
            ):
                truncated = True
                break
    finally:
        if truncated:
            kill_group(process.pid)
        try:
            status = process.wait(float(h.get("timeout", 20)))
        except subprocess.TimeoutExpired:
            kill_group(process.pid)
            status = process.wait()
        timer.cancel()
        errors = process.stderr.read(4096)  # -s keeps grep's stderr to the pattern's error
        process.stdout.close()
        process.stderr.close()
    if (
        status == 2
        and not matches.items
        and any(word in errors for word in (b"Unmatched", b"Invalid", b"Trailing backslash"))
    ):
        raise ToolError(
            "invalid_argument",
            "pattern",
            "is not a valid extended regular expression: %s" % errors.decode("utf-8", "replace").strip(),
        )
    # Cut short (its CPU or memory limit, the timer) unless we stopped it: there may be matches it never reached.
    cut_short = expired.is_set() or (status < 0 and not truncated) or b"exhausted" in errors
    return {"truncated": truncated or cut_short, "cut_short": cut_short}, matches.encode()


class JsonList:
    """Items of an answer's JSON body, refused beyond MAX_ANSWER_BYTES (what the service accepts)."""

    def __init__(self):
        self.items, self.size, self.full = [], 2, False

    def add(self, item):
        size = len(json.dumps(item, separators=(",", ":"))) + 1
        if self.size + size > MAX_ANSWER_BYTES:
            self.full = True
            return False
        self.items.append(item)
        self.size += size
        return True

    def encode(self):
        return json.dumps(self.items, separators=(",", ":")).encode()


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


class CappedBuffer(io.RawIOBase):
    """A write-only buffer that refuses to grow past `limit` bytes."""

    def __init__(self, limit):
        io.RawIOBase.__init__(self)
        self.buffer, self.limit = bytearray(), limit

    def writable(self):
        return True

    def write(self, data):
        if len(self.buffer) + len(data) > self.limit:
            raise ToolError(
                "resource_exhausted",
                "path",
                "the archive would exceed %d bytes; download a smaller folder" % self.limit,
            )
        self.buffer += data
        return len(data)


def download(h, body):
    path = h.get("path", "")
    real = resolve(path)
    if not os.path.lexists(real):
        raise ToolError("not_found", "path", "%s does not exist" % (path or "."))
    sink = CappedBuffer(int(h["max_bytes"]))

    def regular_or_link(info):
        return info if (info.isreg() or info.isdir() or info.issym()) else None

    with tarfile.open(fileobj=sink, mode="w:gz") as archive:
        archive.add(real, arcname=relative(real), recursive=True, filter=regular_or_link)
    return {}, bytes(sink.buffer)


def member_name(name):
    clean = posixpath.normpath(name)
    if name.startswith("/") or clean == ".." or clean.startswith("../") or "\0" in name:
        raise ToolError("invalid_argument", "archive", "member %r leaves the workspace" % name)
    return clean


def upload(h, body):
    base, max_bytes, max_files = h.get("path", ""), int(h["max_bytes"]), int(h["max_files"])
    root = resolve(base)
    root_rel = relative(root)
    written = files = 0
    try:
        archive = tarfile.open(fileobj=io.BytesIO(body), mode="r|*")
    except tarfile.TarError as exc:
        raise ToolError("invalid_argument", "archive", "is not a tar archive: %s" % exc)
    with archive:
        try:
            for member in archive:
                name = member_name(member.name)
                if name == ".":
                    continue
                files += 1
                if files > max_files:
                    raise ToolError("resource_exhausted", "archive", "holds more than %d members" % max_files)
                target_rel = posixpath.normpath(posixpath.join(root_rel, name))
                if member.isdir():
                    real = resolve(target_rel)
                    try:
                        os.makedirs(real, exist_ok=True)
                    except OSError as exc:
                        raise os_error(exc, target_rel)
                elif member.isreg():
                    written += member.size
                    if written > max_bytes:
                        raise ToolError("resource_exhausted", "archive", "expands to more than %d bytes" % max_bytes)
                    write_bytes(
                        resolve(target_rel, follow_final=False),
                        target_rel,
                        archive.extractfile(member),
                        (member.mode & 0o755) | 0o600,
                    )
                elif member.issym() or member.islnk():
                    written += link_into_workspace(member, target_rel, root_rel, max_bytes - written)
                else:
                    raise ToolError(
                        "invalid_argument", "archive", "member %r is a device, FIFO or other special file" % member.name
                    )
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ToolError("resource_exhausted", "archive", "the workspace is full")
            raise ToolError("invalid_argument", "archive", "cannot be read: %s" % exc)
    return {"files": files}, b""


def link_into_workspace(member, target_rel, root_rel, budget):
    """A symbolic link whose target stays inside the workspace, or a copy for a hard link; bytes written."""
    if member.issym():
        if member.linkname.startswith("/"):
            raise ToolError("invalid_argument", "archive", "link %r points to an absolute path" % member.name)
        pointed = posixpath.normpath(posixpath.join(posixpath.dirname(target_rel), member.linkname))
        if pointed == ".." or pointed.startswith("../"):
            raise ToolError("invalid_argument", "archive", "link %r points outside the workspace" % member.name)
        real = resolve(target_rel, follow_final=False)
        make_parents(real, target_rel)
        try:
            os.symlink(member.linkname, real)
        except OSError as exc:
            raise os_error(exc, target_rel)
        return 0
    source_rel = posixpath.normpath(posixpath.join(root_rel, member_name(member.linkname)))
    source = resolve(source_rel, follow_final=False)
    fd = open_regular(source, os.O_RDONLY, source_rel)
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(fd).st_size > budget:
            raise ToolError(
                "resource_exhausted", "archive", "expands past its byte limit through hard link %r" % member.name
            )
        return write_bytes(resolve(target_rel, follow_final=False), target_rel, handle)


OPERATIONS = {
    "read": read_file,
    "write": write_file,
    "edit": edit_file,
    "list": list_dir,
    "search": search,
    "download": download,
    "upload": upload,
}


def handle(header, body):
    operation = OPERATIONS.get(header.get("op"))
    if operation is None:
        raise ToolError("invalid_argument", "op", "unknown operation %r" % header.get("op"))
    return operation(header, body)
