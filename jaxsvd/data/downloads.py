"""Fashion-MNIST's four official files, downloaded on first use into a cache folder, verified and reused (stdlib only).

  FASHION_MNIST_URL     the official mirror (the zalandoresearch/fashion-mnist README's links; torchvision and tfds
                        download from it too); ``$JAXSVD_FASHION_MNIST_URL`` replaces it (a local mirror)
  FASHION_MNIST_SHA256  the official ``.gz`` files' SHA-256 (the README gives their MD5s; these are the same files'
                        SHA-256, as tfds records them); a download must match, byte for byte
  cache_dir             ``$JAXSVD_CACHE``, else ``$XDG_CACHE_HOME/jaxsvd``, else ``~/.cache/jaxsvd``
  fetch                 one file: streamed into a temporary file beside its destination while hashed, checked
                        (length, SHA-256), then renamed into place — an interrupted or corrupt download leaves nothing
  fetch_fashion_mnist   the four files into ``cache_dir()/fashion-mnist`` (files already there are reused: a file
                        exists there only after it was verified), the folder

Progress goes to ``stream`` (default stderr): a line per file; on a terminal the line is redrawn as bytes arrive,
elsewhere (a log file) it is written once, when the file is verified — no carriage returns. Every failure is one
``DownloadError`` line saying what failed; ``jaxsvd.data.load_fashion_mnist`` adds the offline alternatives.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import sys
import tempfile
import urllib.error
import urllib.request

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # S3 website hosting: http only
URL_VARIABLE = "JAXSVD_FASHION_MNIST_URL"
CACHE_VARIABLE = "JAXSVD_CACHE"
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
CHUNK = 1 << 20
TIMEOUT_S = 60.0


class DownloadError(OSError):
  """A download that failed (no network, an HTTP error, an interrupted transfer, a wrong checksum): one line."""


def cache_dir() -> pathlib.Path:
  """Where downloads are kept: ``$JAXSVD_CACHE``, else ``$XDG_CACHE_HOME/jaxsvd``, else ``~/.cache/jaxsvd``.

  Returns:
    The folder (not created here).
  """
  if os.environ.get(CACHE_VARIABLE):
    return pathlib.Path(os.environ[CACHE_VARIABLE]).expanduser()
  xdg = os.environ.get("XDG_CACHE_HOME")
  return (pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache") / "jaxsvd"


def fashion_mnist_url() -> str:
  """The base URL the files are downloaded from: ``$JAXSVD_FASHION_MNIST_URL``, else ``FASHION_MNIST_URL``.

  Returns:
    The URL, ending in '/'.
  """
  url = os.environ.get(URL_VARIABLE) or FASHION_MNIST_URL
  return url if url.endswith("/") else url + "/"


def _size(n: int) -> str:
  return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _copy(response, out, name: str, size: int | None, stream) -> tuple[int, str]:
  """Streams ``response`` into ``out``; (bytes, SHA-256 hex). On a terminal ``stream`` shows the bytes so far."""
  digest, done = hashlib.sha256(), 0
  live = stream.isatty()
  while chunk := response.read(CHUNK):
    out.write(chunk)
    digest.update(chunk)
    done += len(chunk)
    if live:
      stream.write(f"\r  {name}  {_size(done)}" + (f" / {_size(size)}" if size else ""))
      stream.flush()
  return done, digest.hexdigest()


def fetch(url: str, path: str | os.PathLike, sha256: str, stream=None) -> pathlib.Path:
  """Downloads ``url`` to ``path`` if its SHA-256 is ``sha256``; nothing is left at ``path`` or beside it otherwise.

  Args:
    url: the file's URL.
    path: the destination; its folder must exist.
    sha256: the expected SHA-256, hex.
    stream: where progress goes (default: ``sys.stderr`` at the time of the call).

  Returns:
    ``path``, as a ``pathlib.Path``.

  Raises:
    DownloadError: one line naming the URL and what failed (connection, HTTP status, fewer bytes than announced,
      a SHA-256 mismatch).
  """
  path, stream = pathlib.Path(path), stream or sys.stderr
  try:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
  except OSError as err:
    raise DownloadError(f"cannot write in {path.parent} ({err.strerror}; set ${CACHE_VARIABLE})") from None
  try:
    with os.fdopen(fd, "wb") as out:
      try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
          length = response.headers.get("Content-Length")
          size = int(length) if length and length.isdigit() else None
          done, digest = _copy(response, out, path.name, size, stream)
      except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
      except (urllib.error.URLError, OSError, http.client.HTTPException) as err:  # refused, unreachable, DNS, timeout
        raise DownloadError(f"{url}: {getattr(err, 'reason', None) or str(err) or type(err).__name__}") from None
      if size is not None and done != size:
        raise DownloadError(f"{url}: the connection closed after {done} of {size} bytes (interrupted download)")
      if digest != sha256:
        raise DownloadError(f"{url}: SHA-256 {digest} of the {done} bytes received, expected {sha256} (a corrupt or "
                            f"different file; nothing kept)")
      out.flush()
      os.fsync(out.fileno())
    os.chmod(temporary, 0o644)  # mkstemp's 0600 is for the partial file; the verified one reads like any download
    os.replace(temporary, path)
  except BaseException:  # an error, Ctrl-C: no partial file stays
    if stream.isatty():
      stream.write("\n")
    pathlib.Path(temporary).unlink(missing_ok=True)
    raise
  stream.write(("\r" if stream.isatty() else "") + f"  {path.name}  {_size(done)}, SHA-256 verified\n")
  stream.flush()
  return path


def fetch_fashion_mnist(directory: str | os.PathLike | None = None, url: str | None = None,
                        sha256: dict[str, str] | None = None, stream=None) -> pathlib.Path:
  """The folder holding Fashion-MNIST's four ``.gz`` files, downloading those it lacks (see the module doc).

  Args:
    directory: the folder (default ``cache_dir() / 'fashion-mnist'``; created).
    url: the base URL (default ``fashion_mnist_url()``).
    sha256: {file name: SHA-256} (default ``FASHION_MNIST_SHA256``; a local mirror of other bytes passes its own).
    stream: where progress goes (default: ``sys.stderr`` at the time of the call).

  Returns:
    The folder.

  Raises:
    DownloadError: one line, from the first file that fails (files verified before it are kept).
  """
  folder = pathlib.Path(directory) if directory is not None else cache_dir() / "fashion-mnist"
  base, sums, stream = url or fashion_mnist_url(), sha256 or FASHION_MNIST_SHA256, stream or sys.stderr
  missing = [name for name in sums if not (folder / name).exists()]
  if missing:
    try:
      folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
      raise DownloadError(f"cannot create the cache folder {folder} ({err.strerror}; set ${CACHE_VARIABLE})") from None
    stream.write(f"Fashion-MNIST: downloading {len(missing)} file{'s' * (len(missing) > 1)} from {base} to "
                 f"{folder}\n")
    for name in missing:
      fetch(base + name, folder / name, sums[name], stream)
  return folder


__all__ = ["FASHION_MNIST_URL", "URL_VARIABLE", "CACHE_VARIABLE", "FASHION_MNIST_SHA256", "CHUNK",
           "TIMEOUT_S", "DownloadError", "cache_dir", "fashion_mnist_url", "fetch", "fetch_fashion_mnist"]
