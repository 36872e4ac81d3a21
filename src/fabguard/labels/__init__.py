"""Per-unit labels: the serial, the MAC addresses and a QR code, as ZPL for Zebra printers and as PDF.

Pure rendering from values (docs/identities.md): the label's QR code is the Matter onboarding payload
or a field-check URL carrying the serial, chosen by the caller.
"""

from fabguard.labels.content import UnitLabel, field_check_url
from fabguard.labels.pdf import PdfLayout, pdf_labels
from fabguard.labels.zpl import ZplLayout, field_data, zpl_label, zpl_labels

__all__ = [
    "PdfLayout",
    "UnitLabel",
    "ZplLayout",
    "field_check_url",
    "field_data",
    "pdf_labels",
    "zpl_label",
    "zpl_labels",
]
