"""lm-evaluation-harness's HF backend scoring the prompts ``bench_scoring.py --peer-python PY`` hands it.

Run by ``bench_scoring.py`` in lm-evaluation-harness's own virtual environment (it pins its own transformers and
datasets, which must not move this project's)::

    python peer_lm_eval.py REQUESTS.json MODEL_FOLDER BATCH_SIZE > RESULT.json

``REQUESTS.json`` holds ``{"contexts": [...], "continuations": [...]}``; every context is scored with every
continuation through ``HFLM.loglikelihood`` (the call lm-evaluation-harness makes for a multiple-choice task), in
fp32 on the CPU. It prints the log-likelihood matrix and the seconds the call took (model loading apart).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    requests_path, model_folder, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    payload = json.loads(open(requests_path).read())
    contexts, continuations = payload["contexts"], payload["continuations"]
    lm = HFLM(pretrained=model_folder, device="cpu", dtype="float32", batch_size=batch_size)
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=index)
                for context in contexts for index, continuation in enumerate(continuations)]
    started = time.perf_counter()
    scored = lm.loglikelihood(requests, disable_tqdm=True)
    seconds = time.perf_counter() - started
    width = len(continuations)
    matrix = [[scored[row * width + column][0] for column in range(width)] for row in range(len(contexts))]
    import lm_eval

    print(json.dumps({"seconds": seconds, "logprobs": matrix, "version": getattr(lm_eval, "__version__", "?")}))


if __name__ == "__main__":
    main()
