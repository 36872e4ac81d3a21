#!/bin/sh
# One unit's step on a line PC: upload its test report (any format the line writes), then provision it
# with the CSR its secure element made, branching on fabguard-station's exit codes (docs/station.md).
#   station-step.sh SERIAL REPORT ORDER CSR OUTDIR
# Credentials come from $FABGUARD_STATION_DIR (fabguard-station enroll), never from the command line.
set -u
serial=$1 report=$2 order=$3 csr=$4 out=$5

fabguard-station upload "$report"
case $? in
  0) ;;                                                     # stored: the test gate knows this run
  3) echo "REFUSED: report $report was refused (code above); unit $serial stays unprovisioned"; exit 3 ;;
  4) echo "WAIT: server unreachable; $report is spooled ('fabguard-station spool flush' sends it)"; exit 4 ;;
  *) echo "ERROR: fabguard-station upload failed; see above"; exit 1 ;;
esac

fabguard-station provision --order "$order" --serial "$serial" --csr "$csr" --out "$out"
case $? in
  0) echo "PROVISIONED: $out/$serial.pem" ;;
  3) echo "REFUSED: unit $serial was not provisioned (code above): set it aside"; exit 3 ;;
  4) echo "WAIT: server unreachable: run this step again later (the same unit gets the same certificate)"; exit 4 ;;
  *) echo "ERROR: fabguard-station provision failed; see above"; exit 1 ;;
esac
