"""CRL numbers strictly increase: across threads and several server processes publishing at once, and across
restarts; a CRL with a higher number never leaves out a revocation that an earlier one listed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from cryptography import x509

from fabguard.service.authority import revocation
from fabguard.service.core.instance import Instance

WRITERS = 6
EACH = 5


def crl_number(der: bytes) -> int:
    return x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def publish_at_once(instances: list[Instance], ca: str) -> list[int]:
    """``WRITERS`` threads (spread over ``instances``: several pools, as several processes have) each
    publish ``EACH`` CRLs of ``ca``; the numbers they were given."""
    numbers: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def writer(inst: Instance) -> None:
        start.wait()
        try:
            for _ in range(EACH):
                numbers.append(crl_number(revocation.refresh_crl(inst, ca)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(instances[i % len(instances)],)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    return numbers


def test_crls_published_at_once_by_several_processes_get_distinct_increasing_numbers(
    any_instance: Instance,
) -> None:
    first = crl_number(revocation.current_crl(any_instance, "issuing"))
    second_process = Instance.open(any_instance.home, migrate=False)  # its configuration names the database
    try:
        numbers = publish_at_once([any_instance, second_process], "issuing")
    finally:
        second_process.close()
    assert sorted(numbers) == list(range(first + 1, first + 1 + WRITERS * EACH))
    assert crl_number(revocation.current_crl(any_instance, "issuing")) == first + WRITERS * EACH


def test_the_first_crl_of_a_ca_published_at_once_is_numbered_once(any_instance: Instance) -> None:
    """No CRL row yet: every writer races to insert the first."""
    numbers = publish_at_once([any_instance], "station")
    assert sorted(numbers) == list(range(1, 1 + WRITERS * EACH))


def test_crl_numbers_go_on_increasing_after_a_restart(any_instance: Instance) -> None:
    before = crl_number(revocation.refresh_crl(any_instance, "root"))
    any_instance.close()
    reopened = Instance.open(any_instance.home)
    try:
        assert crl_number(revocation.refresh_crl(reopened, "root")) == before + 1
    finally:
        reopened.close()


def test_server_processes_publishing_at_once_never_reuse_a_number(any_instance: Instance) -> None:
    """Real processes, each with its own instance over the same database."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from cryptography import x509
        from fabguard.service.authority import revocation
        from fabguard.service.core.instance import Instance
        inst = Instance.open(Path(sys.argv[1]), migrate=False)
        for _ in range(int(sys.argv[2])):
            crl = x509.load_der_x509_crl(revocation.refresh_crl(inst, "issuing"))
            print(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number, flush=True)
        inst.close()
        """
    )
    first = crl_number(revocation.current_crl(any_instance, "issuing"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(any_instance.home), str(EACH)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    numbers: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        seen = [int(line) for line in out.split()]
        assert seen == sorted(seen) and len(set(seen)) == len(seen)  # each process sees its own go up
        numbers += seen
    assert sorted(numbers) == list(range(first + 1, first + 1 + 3 * EACH))
