"""A minimal in-memory Hugging Face Hub for tests, on 127.0.0.1.

No open-source Hub server with uploads exists on the package registries, so this implements only
the endpoints huggingface_hub 0.36 and 2.x call for `create_repo`, `create_branch`, `upload_folder`
(validate-yaml, preupload, the LFS batch API + a basic-transfer PUT, the NDJSON commit) and
`snapshot_download` (repo info, the file tree (2.x), HEAD/GET resolve), with the response fields
those clients read (hf_api.py, _commit_api.py, lfs.py, file_download.py, _snapshot_download.py).
Every request is recorded, and write endpoints (and private repos) demand the expected token.

It has no Xet storage. Hub 0.36 offers "xet" in the LFS batch request and the answer picks "basic".
Hub 2.x asks the server nothing: it uploads through Xet whenever hf_xet is installed, so clients
of this server must set constants.HF_HUB_DISABLE_XET (the tests' fixture does); downloads use
plain HTTP because resolve answers carry no X-Xet-* headers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".h5", ".msgpack")
REPO = r"(?P<repo>[^/]+/[^/]+)"


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, tuple[bytes, bool]]] = field(default_factory=dict)  # sha -> {path: (data, lfs)}

    def resolve(self, revision: str) -> str | None:
        return self.branches.get(revision) or (revision if revision in self.commits else None)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


class LoopbackHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_blobs: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[Request] = []
        self.refuse_lfs_uploads = False  # to test a failed upload of the weights
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return {path: data for path, (data, _) in repo.commits[repo.resolve(revision)].items()}

    # -------------------------------------------------------------- request handling

    def handle(self, h: "BaseHTTPRequestHandler", method: str) -> None:
        path = urlsplit(h.path).path  # matched still quoted: a branch name may hold an encoded '/'
        with self.lock:
            self.requests.append(Request(method, unquote(path), {k.lower(): v for k, v in h.headers.items()}))
        body = _read_body(h) if method in ("POST", "PUT") else b""
        routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>.+)", self.preupload),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>.+)", self.commit),
            ("POST", rf"/api/models/{REPO}/branch/(?P<branch>.+)", self.create_branch),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self.lfs_upload),
            ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<folder>.+))?", self.tree),
            ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>.+))?", self.repo_info),
            ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
            ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
        ]
        for verb, pattern, endpoint in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                status, headers, payload = endpoint(h, body, **args)
                break
        else:
            status, headers, payload = _json(404, {"error": f"no route {method} {path}"})
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(payload)

    def authorized(self, h) -> bool:
        return h.headers.get("authorization") == f"Bearer {self.token}"

    def repo_or_error(self, h, repo_id: str, write: bool):
        repo = self.repos.get(repo_id)
        if repo is None or ((write or repo.private) and not self.authorized(h)):
            return None, _json(404 if repo is None else 401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return repo, None

    def create_repo(self, h, body):
        if not self.authorized(h):
            return _json(401, {"error": "Invalid credentials"})
        request = json.loads(body)
        repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            return _json(409, {"error": "You already created this model repo", "url": url})
        sha = uuid.uuid4().hex + "00000000"
        self.repos[repo_id] = Repo(private=bool(request.get("private")), branches={"main": sha}, commits={sha: {}})
        return _json(200, {"url": url, "name": repo_id})

    def validate_yaml(self, h, body):
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as err:
            return _json(400, {"errors": [{"message": str(err)}]})
        return _json(200, {"errors": [], "warnings": []})

    def preupload(self, h, body, repo, rev):
        _, error = self.repo_or_error(h, repo, write=True)
        if error:
            return error
        files = json.loads(body)["files"]
        modes = [
            {"path": f["path"], "uploadMode": "lfs" if _is_lfs(f["path"], base64.b64decode(f["sample"])) else "regular", "shouldIgnore": False}
            for f in files
        ]
        return _json(200, {"files": modes})

    def lfs_batch(self, h, body, repo):
        _, error = self.repo_or_error(h, repo, write=True)
        if error:
            return error
        objects = []
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_blobs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        return _json(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, h, body, oid):
        if self.refuse_lfs_uploads:
            return _json(403, {"error": "upload refused"})
        if hashlib.sha256(body).hexdigest() != oid:
            return _json(400, {"error": "sha256 mismatch"})
        with self.lock:
            self.lfs_blobs[oid] = body
        return 200, {}, b""

    def commit(self, h, body, repo, rev):
        repo_obj, error = self.repo_or_error(h, repo, write=True)
        if error:
            return error
        parent = repo_obj.branches.get(rev)
        if parent is None:
            return _json(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        tree = dict(repo_obj.commits[parent])
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                tree[value["path"]] = (base64.b64decode(value["content"]), False)
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.lfs_blobs:
                    return _json(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                tree[value["path"]] = (self.lfs_blobs[value["oid"]], True)
            elif item["key"] in ("deletedFile", "deletedFolder"):
                tree = {p: v for p, v in tree.items() if p != value["path"] and not p.startswith(value["path"].rstrip("/") + "/")}
        sha = uuid.uuid4().hex + "00000000"
        repo_obj.commits[sha] = tree
        repo_obj.branches[rev] = sha
        return _json(200, {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    def create_branch(self, h, body, repo, branch):
        repo_obj, error = self.repo_or_error(h, repo, write=True)
        if error:
            return error
        if branch in repo_obj.branches:
            return _json(409, {"error": "Reference already exists"})
        start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
        repo_obj.branches[branch] = repo_obj.resolve(start)
        return _json(200, {})

    def readable_revision(self, h, repo_id: str, rev: str):
        """(repo, commit sha, None) for a readable repo and known revision, else (None, None, error response)."""
        repo, error = self.repo_or_error(h, repo_id, write=False)
        if error:
            return None, None, error
        sha = repo.resolve(rev)
        if sha is None:
            return None, None, _json(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        return repo, sha, None

    def repo_info(self, h, body, repo, rev=None):
        repo_obj, sha, error = self.readable_revision(h, repo, rev or "main")
        if error:
            return error
        siblings = [{"rfilename": path} for path in sorted(repo_obj.commits[sha])]
        return _json(200, {"id": repo, "sha": sha, "private": repo_obj.private, "siblings": siblings})

    def tree(self, h, body, repo, rev, folder=""):
        """The file listing hub 2.x's snapshot_download reads (one page: no Link header)."""
        repo_obj, sha, error = self.readable_revision(h, repo, rev)
        if error:
            return error
        prefix = folder.strip("/") + "/" if folder else ""
        recursive = parse_qs(urlsplit(h.path).query).get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path, (data, lfs) in sorted(repo_obj.commits[sha].items()):
            if not path.startswith(prefix):
                continue
            parents = path[len(prefix):].split("/")[:-1]
            if recursive:
                folders.update(prefix + "/".join(parents[:i]) for i in range(1, len(parents) + 1))
            elif parents:  # a top-level listing shows the first folder, not the files inside it
                folders.add(prefix + parents[0])
                continue
            entry = {"type": "file", "path": path, "size": len(data), "oid": _git_blob_sha1(data)}
            if lfs:  # git holds the pointer file, so the blob id is the pointer's
                pointer = _lfs_pointer(data)
                entry["oid"] = _git_blob_sha1(pointer)
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
            entries.append(entry)
        entries += [{"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()} for path in sorted(folders)]
        return _json(200, entries)

    def resolve(self, h, body, repo, rev, file):
        repo_obj, sha, error = self.readable_revision(h, repo, rev)
        if error:
            return error
        if file not in repo_obj.commits[sha]:
            return _json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})
        data, lfs = repo_obj.commits[sha][file]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha1(data)}"', "Content-Type": "application/octet-stream"}
        if lfs:
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))})
        return 200, headers, data


def _handler_class(hub: LoopbackHub):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hub.handle(self, "GET")

        def do_HEAD(self):
            hub.handle(self, "HEAD")

        def do_POST(self):
            hub.handle(self, "POST")

        def do_PUT(self):
            hub.handle(self, "PUT")

        def log_message(self, *args):  # keep test output clean
            pass

    return Handler


def _read_body(h) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":  # file-like uploads have no length
        chunks = []
        while (size := int(h.rfile.readline().split(b";")[0].strip(), 16)) > 0:
            chunks.append(h.rfile.read(size))
            h.rfile.readline()
        h.rfile.readline()
        return b"".join(chunks)
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


def _json(status: int, payload, headers: dict | None = None):
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def _is_lfs(path: str, sample: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or b"\x00" in sample


def _lfs_pointer(data: bytes) -> bytes:
    """The pointer file git stores in place of an LFS file's content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
