"""What an ID photo costs next to a background-only job on the same photo, measured in one run.

    python bench/bench_idphoto.py [--weights PATH] [--repeats 7] [--threads 2]

Both jobs decode the photo and run MODNet on it in this process. A: background replacement (matte,
composite, JPEG). B: the ID-photo job for one spec, icao-35x45: the same forward pass, then face
detection, framing, composite and the JPEG (and, in B+sheet, a 4x6 print sheet). B frames with the
photo's own alpha (``test2.cutout.png`` from ../shared/fixtures/faces): the fixture checkpoint's random
weights give a matte that frames nothing, but the forward pass is still run, so B costs what a real
job costs. A and B are interleaved (A B A B ...) and the ratio B/A is printed per pair, then summarised.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO.parent / "shared" / "fixtures"
FIXTURE_WEIGHTS = FIXTURES / "modnet" / "random_weights.ckpt"
PHOTO = FIXTURES / "faces" / "test2.cutout.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=FIXTURE_WEIGHTS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from common.id_photo import matte_from_alpha
    from common.options import JobOptions
    from common.pipeline import decode, finish_id_photos, prepare, replace_photo
    from common.settings import Settings
    from worker.faces import FaceDetector
    from worker.runtime import ModelRunner

    torch.set_num_threads(args.threads)
    settings = Settings(model_path=args.weights, device="cpu")
    runner = ModelRunner.load(args.weights, "cpu", threads=args.threads)
    runner.warm_up()
    detector = FaceDetector()
    data = PHOTO.read_bytes()
    replacement = JobOptions(background="white")
    id_photo = JobOptions(id_spec="icao-35x45", matte_source="alpha")
    id_sheet = JobOptions(id_spec="icao-35x45", matte_source="alpha", sheet="4x6")

    def job_a() -> None:
        replace_photo(data, replacement, runner.predict, settings)

    def id_job(options: JobOptions) -> None:
        decoded = decode(data, settings)
        runner.predict([prepare(decoded, settings).network_input])  # what a network-matte job runs
        finish_id_photos(decoded, matte_from_alpha(decoded), detector.detect(decoded.rgb), options, settings)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    for fn in (job_a, lambda: id_job(id_photo), lambda: id_job(id_sheet)):
        fn()  # warm every path once
    rows = []
    for _ in range(args.repeats):
        a = timed(job_a)
        b = timed(lambda: id_job(id_photo))
        c = timed(lambda: id_job(id_sheet))
        rows.append((a, b, c))
        print(f"A {a:7.1f} ms   B {b:7.1f} ms ({b / a:.2f}x)   B+sheet {c:7.1f} ms ({c / a:.2f}x)")
    a, b, c = (statistics.median(column) for column in zip(*rows, strict=True))
    ratios_b = statistics.median(row[1] / row[0] for row in rows)
    ratios_c = statistics.median(row[2] / row[0] for row in rows)
    faces_ms = statistics.median(
        timed(lambda: detector.detect(decode(data, settings).rgb)) for _ in range(args.repeats)
    )
    print(f"photo {PHOTO.name}, {args.threads} threads, {args.repeats} pairs")
    print(f"median A (background only) {a:.1f} ms; B (ID photo) {b:.1f} ms; B+sheet {c:.1f} ms")
    print(
        f"median ratio B/A {ratios_b:.2f}; (B+sheet)/A {ratios_c:.2f}; decode + face detection alone {faces_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
