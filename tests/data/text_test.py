"""Byte-level text corpora (``jaxsvd.data.text``) against files the test writes and the real standard library."""

import os

import chex
import numpy as np
import pytest

from jaxsvd.data import text


def write(root, name: str, data: bytes) -> None:
  path = os.path.join(root, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


@pytest.fixture
def folder(tmp_path):
  root = str(tmp_path / "corpus")
  for i in range(10):
    write(root, f"pkg/m{i}.py", f"def f{i}():\n  return {i}  # é\n".encode())
  write(root, "empty.py", b"")
  write(root, "blob.py", b"\x00\x01\x02")
  write(root, "latin.py", "caf\u00e9".encode("latin-1"))
  write(root, "notes.txt", b"not python")
  return root


def test_split_by_file_is_fixed_by_the_seed_and_skips_what_is_not_text(folder):
  corpus = text.load_corpus(folder, test_fraction=0.2, seed=0)
  assert corpus.skipped == {"empty": 1, "binary (NUL byte)": 1, "not UTF-8": 1}
  assert len(corpus.train_files) == 8 and len(corpus.test_files) == 2
  assert not set(corpus.train_files) & set(corpus.test_files)
  expected = b"".join(open(os.path.join(folder, f), "rb").read() + b"\0" for f in corpus.train_files)
  np.testing.assert_array_equal(corpus.train, np.frombuffer(expected, np.uint8))
  again, other = text.load_corpus(folder, test_fraction=0.2, seed=0), text.load_corpus(folder, test_fraction=0.2,
                                                                                       seed=3)
  assert again.test_files == corpus.test_files and other.test_files != corpus.test_files
  assert "8 train files" in corpus.describe() and "1 empty" in corpus.describe()


def test_pack_makes_every_token_a_target_once():
  tokens = np.arange(23, dtype=np.uint8)
  packed = text.pack(tokens, seq_len=5)
  reference = np.stack([tokens[i * 5:i * 5 + 6] for i in range((23 - 1) // 5)]).astype(np.int32)
  chex.assert_trees_all_equal(packed, reference)
  np.testing.assert_array_equal(packed[:, 1:].ravel(), tokens[1:21])


@pytest.mark.parametrize("call, message", [
    (lambda root: text.load_corpus(os.path.join(root, "missing")), "does not exist or is not a folder"),
    (lambda root: text.load_corpus(root, suffixes=(".rst",)), "holds no file ending with .rst"),
    (lambda root: text.load_corpus(os.path.join(root, "pkg"), suffixes=(".pyc",)), "holds no file"),
    (lambda root: text.load_corpus(root, test_fraction=1.5), r"test_fraction must be in \(0, 1\)"),
    (lambda root: text.pack(np.zeros(3, np.uint8), 5), "do not fill one sequence"),
    (lambda root: text.pack(np.zeros(30, np.uint8), 0), "seq_len must be an int >= 1"),
])
def test_bad_input_is_one_line(folder, call, message):
  with pytest.raises(ValueError, match=message) as info:
    call(folder)
  assert "\n" not in str(info.value)


def test_a_folder_of_unusable_files_is_one_line(tmp_path):
  write(str(tmp_path), "a.py", b"\x00")
  with pytest.raises(ValueError, match=r"none of its 1 files is usable text \({'binary \(NUL byte\)': 1}\)"):
    text.load_corpus(str(tmp_path))


def test_the_standard_library_is_a_corpus_every_machine_has():
  corpus = text.load_corpus(text.stdlib_dir())
  assert len(corpus.train_files) > 200 and corpus.test.size > 100_000
  assert corpus.train.max() < text.VOCAB and "os.py" in corpus.train_files + corpus.test_files


def test_excluded_folders_are_not_entered(tmp_path):
  write(str(tmp_path), "a.py", b"x = 1\n")
  write(str(tmp_path / "site-packages" / "pkg"), "b.py", b"y = 2\n")
  assert text.text_files(str(tmp_path)) == ["a.py", os.path.join("site-packages", "pkg", "b.py")]
  assert text.text_files(str(tmp_path), exclude=text.STDLIB_EXCLUDE) == ["a.py"]
