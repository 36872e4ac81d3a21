"""The one transaction that matters: test records, unit requests, group commit, re-enrolment, key attestation."""
