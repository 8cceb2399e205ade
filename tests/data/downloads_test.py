"""Fashion-MNIST downloaded on first use, against an HTTP server on 127.0.0.1 (no other address is contacted): the
files verified and reused, and an interrupted download, a wrong checksum and no network each one line, nothing
half-written left."""

import functools
import hashlib
import http.server
import io
import os
import socket
import struct
import threading

import numpy as np
import pytest

from jaxsvd import data
from jaxsvd.data import downloads
from tests import helpers

NAMES = [stem + ".gz" for stem in data.FASHION_FILES.values()]
# The official files' MD5s, from the zalandoresearch/fashion-mnist README.
OFFICIAL_MD5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
OFFICIAL_MTIME = {"train": 1504176606, "t10k": 1504176627}  # their gzip headers' times (2017-08-31, UTC)
INSTALLED = data.FASHION_MNIST_DIRS[0]
OFFLINE = r"install it with `apt-get install dataset-fashion-mnist` or set --config\.data_dir to a directory holding"


class Mirror(http.server.SimpleHTTPRequestHandler):
  """Serves its folder; records each request; ``cut`` names a file it sends only half of, then closes."""
  requests: list
  cut = None

  def do_GET(self):  # noqa: N802 -- http.server's name
    self.requests.append(self.path)
    name = self.path.lstrip("/")
    if name != self.cut:
      return super().do_GET()
    with open(os.path.join(self.directory, name), "rb") as f:
      body = f.read()
    self.send_response(200)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body[:len(body) // 2])
    self.close_connection = True

  def log_message(self, *args):  # quiet
    pass


def installed():
  return all(os.path.exists(os.path.join(INSTALLED, n)) for n in NAMES)


def official(name: str) -> bytes:
  """The official file, from the Debian package's copy: the package's build rewrote only the gzip header (the file
  name dropped, the time reset); the compressed data and the trailer are the official file's."""
  with open(os.path.join(INSTALLED, name), "rb") as f:
    packaged = f.read()
  assert packaged[:4] == b"\x1f\x8b\x08\x00", "the packaged file's gzip header changed"
  return (b"\x1f\x8b\x08\x08" + struct.pack("<I", OFFICIAL_MTIME[name.split("-")[0]]) + packaged[8:10] + name[:-3].encode()
          + b"\x00" + packaged[10:])


def test_the_checksums_are_the_official_files(tmp_path):
  if not installed():
    pytest.skip("dataset-fashion-mnist not installed (CI installs it)")
  for name in NAMES:
    assert hashlib.md5(official(name)).hexdigest() == OFFICIAL_MD5[name]
    assert hashlib.sha256(official(name)).hexdigest() == downloads.FASHION_MNIST_SHA256[name]


@pytest.fixture
def mirror(tmp_path, monkeypatch):
  """(base URL, served folder, request log): the official files (rebuilt from the installed package: CI installs
  it) with the official checksums, else small IDX files of the same names and their checksums; the cache a fresh
  folder; no local copy."""
  served = tmp_path / "served"
  served.mkdir()
  if installed():
    for name in NAMES:
      (served / name).write_bytes(official(name))
  else:
    helpers.write_fashion_mnist(str(served), 60, 20)
    monkeypatch.setattr(downloads, "FASHION_MNIST_SHA256",
                        {n: hashlib.sha256((served / n).read_bytes()).hexdigest() for n in NAMES})
  requests = []
  handler = type("Handler", (Mirror,), {"requests": requests})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  url = f"http://127.0.0.1:{server.server_address[1]}/"
  monkeypatch.setenv(downloads.URL_VARIABLE, url)
  monkeypatch.setenv(downloads.CACHE_VARIABLE, str(tmp_path / "cache"))
  monkeypatch.setattr(data.datasets, "FASHION_MNIST_DIRS", (str(tmp_path / "not-installed"),))
  yield url, served, handler
  server.shutdown()
  server.server_close()
  thread.join()


def _cache(tmp_path):
  folder = tmp_path / "cache" / "fashion-mnist"
  return sorted(os.listdir(folder)) if folder.exists() else []


def test_download_verifies_shows_a_line_per_file_and_is_reused(mirror, tmp_path, capsys):
  url, served, handler = mirror
  ds = data.load_fashion_mnist()
  np.testing.assert_array_equal(ds.train_images[..., 0], data.read_idx(str(served / "train-images-idx3-ubyte.gz")))
  np.testing.assert_array_equal(ds.test_labels, data.read_idx(str(served / "t10k-labels-idx1-ubyte.gz")))
  err = capsys.readouterr().err
  assert "\r" not in err and err.splitlines()[0] == (f"Fashion-MNIST: downloading 4 files from {url} to "
                                                     f"{tmp_path / 'cache' / 'fashion-mnist'}")
  assert [line.split()[0] for line in err.splitlines()[1:]] == NAMES
  assert all(line.endswith("SHA-256 verified") for line in err.splitlines()[1:])
  assert _cache(tmp_path) == sorted(NAMES) and sorted(handler.requests) == sorted(f"/{n}" for n in NAMES)
  assert all((tmp_path / "cache" / "fashion-mnist" / n).stat().st_mode & 0o777 == 0o644 for n in NAMES)
  again = data.load_dataset("fashion_mnist")  # the cache is a local copy: no request, no output
  np.testing.assert_array_equal(again.train_images, ds.train_images)
  assert len(handler.requests) == 4 and capsys.readouterr().err == ""


def test_interrupted_download_is_one_line_and_leaves_nothing(mirror, tmp_path):
  url, served, handler = mirror
  handler.cut = "t10k-images-idx3-ubyte.gz"  # the third file: the two before it are verified and kept
  size = (served / handler.cut).stat().st_size
  with pytest.raises(FileNotFoundError) as err:
    data.load_fashion_mnist()
  message = str(err.value)
  assert "\n" not in message
  assert f"{url}t10k-images-idx3-ubyte.gz: the connection closed after {size // 2} of {size} bytes " \
         "(interrupted download)" in message
  assert _cache(tmp_path) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
  handler.cut = None  # the next load fetches only what is missing
  data.load_fashion_mnist()
  assert handler.requests[-2:] == ["/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
  assert _cache(tmp_path) == sorted(NAMES)


def test_wrong_checksum_is_one_line_and_leaves_nothing(mirror, tmp_path, monkeypatch):
  url, served, _ = mirror
  wrong = {**downloads.FASHION_MNIST_SHA256, "train-images-idx3-ubyte.gz": "0" * 64}
  monkeypatch.setattr(downloads, "FASHION_MNIST_SHA256", wrong)
  with pytest.raises(FileNotFoundError, match=rf"(?s)^Fashion-MNIST not found in .*data_dir is unset\) and the "
                                              rf"download failed \({url}train-images-idx3-ubyte.gz: SHA-256 "
                                              rf"[0-9a-f]{{64}} of the \d+ bytes received, expected 0{{64}} .*"
                                              f"{OFFLINE}") as err:
    data.load_fashion_mnist()
  assert "\n" not in str(err.value) and _cache(tmp_path) == []


def test_no_network_names_the_apt_package_and_data_dir(mirror, tmp_path, monkeypatch):
  with socket.socket() as s:  # a port nothing listens on: the connection is refused
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
  monkeypatch.setenv(downloads.URL_VARIABLE, f"http://127.0.0.1:{closed}")
  with pytest.raises(FileNotFoundError, match=rf"download failed \(http://127\.0\.0\.1:{closed}/train-images-idx3-"
                                              rf"ubyte\.gz: \[Errno \d+\] Connection refused\): {OFFLINE}") as err:
    data.load_fashion_mnist()
  assert "\n" not in str(err.value) and _cache(tmp_path) == []


def test_a_named_data_dir_never_downloads(mirror, tmp_path):
  _, _, handler = mirror
  (tmp_path / "mine").mkdir()
  with pytest.raises(FileNotFoundError, match="holds none of Fashion-MNIST's four files"):
    data.load_fashion_mnist(str(tmp_path / "mine"))
  assert handler.requests == []


class Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_on_a_terminal_is_redrawn_in_place(mirror, tmp_path):
  url, served, _ = mirror
  stream = Terminal()
  name = "train-labels-idx1-ubyte.gz"
  downloads.fetch(url + name, tmp_path / name, downloads.FASHION_MNIST_SHA256[name], stream)
  size = f"{(served / name).stat().st_size / 1e3:.1f} kB"  # labels: under 100 kB
  assert stream.getvalue() == f"\r  {name}  {size} / {size}\r  {name}  {size}, SHA-256 verified\n"


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv(downloads.CACHE_VARIABLE, str(tmp_path / "a"))
  assert downloads.cache_dir() == tmp_path / "a"
  monkeypatch.delenv(downloads.CACHE_VARIABLE)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert downloads.cache_dir() == tmp_path / "xdg" / "jaxsvd"
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert downloads.cache_dir() == tmp_path / "home" / ".cache" / "jaxsvd"
