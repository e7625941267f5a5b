"""The zero-shot classifier's pieces at their edges: the predictions CSV of `minicfg classify --out`.

Written for the survivors of mutation testing (docs/mutation.md); each expected value is written out by hand here.
"""

import numpy as np
import torch

from minicfg import zero_shot


def test_the_predictions_csv_is_written_into_new_folders_row_by_row(tmp_path):
    """`minicfg classify --out` may name a folder that does not exist yet; the CSV has one row per image, an empty
    label when the file had none, and each error to 6 significant digits (csv's own \\r\\n line ends)."""
    out = tmp_path / "new" / "folder" / "p.csv"
    written = zero_shot._write_csv(out, None, torch.tensor([1, 0]), torch.tensor([[0.5, 0.25], [1 / 3, 2.0]]))
    assert written == out
    assert out.read_bytes() == (b"index,label,predicted,error_0,error_1\r\n"
                                b"0,,1,0.5,0.25\r\n"
                                b"1,,0,0.333333,2\r\n")


def test_the_predictions_csv_carries_the_files_labels(tmp_path):
    out = zero_shot._write_csv(tmp_path / "q.csv", np.array([3, 7]), torch.tensor([3, 1]),
                               torch.tensor([[0.125, 10.0, 1e-7], [123456789.0, 0.0, 1.5]]))
    assert out.read_text().splitlines() == ["index,label,predicted,error_0,error_1,error_2",
                                            "0,3,3,0.125,10,1e-07",
                                            "1,7,1,1.23457e+08,0,1.5"]
