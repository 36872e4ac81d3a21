"""PDF labels, read back as a scanner would: rendered with pdftoppm, the QR code decoded by zbarimg."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fabguard.domain.identities import MacBlock, SerialFormat
from fabguard.labels import PdfLayout, UnitLabel, field_check_url, pdf_labels
from fabguard.pki.matter import ProductId, UnitCommissioning, VendorId


def _tools() -> None:
    missing = [t for t in ("pdftoppm", "zbarimg", "pdftotext") if shutil.which(t) is None]
    if missing:
        message = f"{missing} missing: apt-get install poppler-utils zbar-tools"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _pages(pdf: bytes, directory: Path) -> list[Path]:
    (directory / "labels.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "300", "-png", "labels.pdf", "page"], cwd=directory, check=True, timeout=60)
    return sorted(directory.glob("page-*.png"))


def _qr(png: Path) -> str:
    done = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def test_each_page_carries_its_units_qr_code_exactly(tmp_path: Path) -> None:
    _tools()
    serials = SerialFormat("FG-26-", 6)
    macs = MacBlock.parse("70-B3-D5-7A-9", per_unit=2)
    matter = [UnitCommissioning.generate(VendorId(0xFFF2), ProductId(0x8001), iterations=1000) for _ in range(2)]
    labels = [
        UnitLabel(serials.serial(n), c.qr_code, macs.addresses(n), manual_code=c.payload.manual_code_grouped())
        for n, c in enumerate(matter)
    ]
    check_serial = serials.serial(2)
    labels.append(UnitLabel(check_serial, field_check_url("https://check.example.com/unit", check_serial)))
    pages = _pages(pdf_labels(labels), tmp_path)
    assert len(pages) == 3
    assert [_qr(p) for p in pages] == [label.qr for label in labels]
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "labels.pdf"), "-"], capture_output=True, text=True)
    for label in labels:
        for line in label.lines():
            assert line in text.stdout


def test_a_small_label_still_scans(tmp_path: Path) -> None:
    _tools()
    serial = SerialFormat("X", 4).serial(1)
    long_url = field_check_url("https://check.example.com/" + "a" * 120, serial)
    labels = [UnitLabel(serial, long_url, title="Long URL")]
    (page,) = _pages(pdf_labels(labels, PdfLayout(width_mm=40, height_mm=20, qr_mm=18)), tmp_path)
    assert _qr(page) == long_url
