"""Random access to one split's serialized examples, in a dataset TFDS prepared as ArrayRecord files.

`SplitRecords` opens every file of the split once (a truncated or missing file fails here, naming it, before any
step), reads any examples by index (`read`, called from tf.data through `tf.numpy_function`), says where an
example lives (`locate`, for messages) and fingerprints the files (`fingerprint`), so a resumed run notices a
dataset prepared again under it.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import prepare_command
from jaxdl.errors import DataError, DatasetNotAvailable
from jaxdl.registry import BUILDERS, is_import_path

FINGERPRINT_BYTES = 64 * 1024


def is_random_access(builder) -> bool:
    return builder.info.file_format == tfds.core.file_adapters.FileFormat.ARRAY_RECORD


def preparable(name: str) -> bool:
    """Whether `jaxdl prepare` can prepare dataset `name`: a built-in, a builder's import path or a TFDS catalog
    name (not an image folder or arrays, which the run that names them prepares from its files)."""
    return name in BUILDERS.builtin_names() or is_import_path(name) or name in tfds.list_builders()


def array_record_advice(name: str, builder) -> str:
    """How dataset `name` (as dataset.name writes it) gets ArrayRecord files, as a sentence ending in ', or ', or
    '' where jaxdl cannot prepare it again (an image folder or arrays, prepared from files). A data dir of its own:
    the dataset's TFRecord files stay where they are, and tfds keeps one file format per prepared version."""
    if not preparable(name):
        return ''
    target = f'{str(builder.data_dir_root).rstrip("/")}-array_record'
    return (
        f'prepare it as ArrayRecord into a data dir of its own (`{prepare_command(name, target, array_record=True)}`)'
        f' and set dataset.data_dir={target}, or '
    )


class SplitRecords:
    def __init__(self, builder, split: str):
        if not is_random_access(builder):
            raise DatasetNotAvailable(
                f'dataset {builder.name!r} is stored as {builder.info.file_format.value} files, which cannot be read '
                f'by index; the streaming pipeline needs ArrayRecord: {array_record_advice(builder.name, builder)}'
                f"set dataset.source='memory'."
            )
        self.dataset, self.split = builder.name, split
        try:
            self._source = builder.as_data_source(split).data_source  # array_record's raw-bytes source
        except (ValueError, KeyError) as e:
            raise DatasetNotAvailable(f'dataset {builder.name!r} has no split {split!r}: {e}') from None
        self._instructions = list(self._source._read_instructions)
        self._check_files()
        self._starts = np.cumsum([0] + [i.end - i.start for i in self._instructions])

    def _check_files(self) -> None:
        """Each file opens and holds the records the dataset's metadata says: ArrayRecord keeps its index in a
        footer, so a file cut short fails here rather than at some later step."""
        from array_record.python.array_record_module import ArrayRecordReader

        for instruction in self._instructions:
            path = instruction.filename
            try:
                reader = ArrayRecordReader(os.fspath(path))
                count = reader.num_records() if reader.ok() else None
                reader.close()
            except Exception as e:  # array_record raises plain RuntimeError/ValueError for an unreadable file
                count = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
            if not isinstance(count, int) or count < instruction.end:
                found = 'unreadable' if count is None else count if isinstance(count, str) else f'{count} records'
                raise DataError(
                    f'{self.dataset} {self.split}: the record file {path} is damaged or truncated '
                    f'({found}; its metadata says {instruction.num_records} records). Prepare the '
                    f'dataset again (or restore the file).'
                )

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The serialized examples at `indices` (int64 [n]), as a numpy array of bytes."""
        return np.array(self._source.__getitems__([int(i) for i in indices]), dtype=object)

    def locate(self, index: int) -> str:
        """Where example `index` is stored, for a message: 'record R of FILE'."""
        file = int(np.searchsorted(self._starts, index, side='right')) - 1
        instruction = self._instructions[file]
        return f'record {index - self._starts[file] + instruction.start} of {instruction.filename}'

    def fingerprint(self) -> str:
        """A hash of the split's files: names, sizes, record counts, and the first and last 64 KiB of each (an
        ArrayRecord file ends with the index of its chunks, so records written in another order or with other
        content change it), read in milliseconds whatever the files' size."""
        digest = hashlib.sha256()
        for instruction in self._instructions:
            path = os.fspath(instruction.filename)
            size = os.path.getsize(path)
            digest.update(f'{os.path.basename(path)}:{size}:{instruction.start}:{instruction.end}\n'.encode())
            with open(path, 'rb') as f:
                digest.update(f.read(FINGERPRINT_BYTES))
                f.seek(max(0, size - FINGERPRINT_BYTES))
                digest.update(f.read(FINGERPRINT_BYTES))
        return digest.hexdigest()[:16]
