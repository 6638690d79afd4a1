"""The common layer: name checks, canonical JSON, hashing, and that the old import paths re-export it."""
import hashlib

import pytest

import common
from common.names import canonical_json, check_name


@pytest.mark.parametrize('name', ['fcn', 'fcn_r18-w16_synthcity', 'a.b+c', '0x'])
def test_valid_names_pass(name):
    assert check_name(name, 'model') == name


@pytest.mark.parametrize('name', ['', '.hidden', '-x', 'a/b', '../x', 'a b', 'é', None, 3])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError, match='model name .* is not valid'):
        check_name(name, 'model')


def test_canonical_json_is_order_and_int_float_independent():
    a = canonical_json({'b': [1.0, 2.5, (3, 4)], 'a': {'y': 8.0, 'x': None}})
    b = canonical_json({'a': {'x': None, 'y': 8}, 'b': [1, 2.5, [3, 4]]})
    assert a == b == '{"a":{"x":null,"y":8},"b":[1,2.5,[3,4]]}'


def test_sha256_file_equals_hashlib_over_chunks(tmp_path):
    data = bytes(range(256)) * 8193                      # more than two 1 MiB chunks
    path = tmp_path / 'f'
    path.write_bytes(data)
    assert common.sha256_file(path) == common.sha256_bytes(data) == hashlib.sha256(data).hexdigest()


def test_old_import_paths_are_the_same_objects():
    """benchmark.errors / cells / store re-export the common definitions (one class, one function)."""
    import benchmark.cells
    import benchmark.errors
    import benchmark.store
    import model_zoo.builder
    for name in ('BenchmarkError', 'ConfigError', 'DatasetError', 'CheckpointError', 'ResultsError',
                 'ModelError'):
        assert getattr(benchmark.errors, name) is getattr(common, name)
    assert issubclass(common.ModelError, common.BenchmarkError)
    assert benchmark.cells.check_name is check_name and benchmark.cells.canonical_json is canonical_json
    for name in ('atomic_write_bytes', 'check_writable_dir', 'find_temporary', 'sha256_file', 'sha256_bytes'):
        assert getattr(benchmark.store, name) is getattr(common, name)
    assert model_zoo.builder.sha256_file is common.sha256_file


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / 'sub' / 'f.txt'
    common.atomic_write_bytes(path, b'old')
    common.atomic_write_bytes(path, b'new contents')
    assert path.read_bytes() == b'new contents'
    assert not common.find_temporary(tmp_path)
