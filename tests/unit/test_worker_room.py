"""A job's room in the memory budget, as the worker that takes it reckons it (serve/workers.py): what the budget
leaves a worker (Pool.share) and the check before a job runs (Worker._check_room), with the processes left out: a
worker that is not started holds no memory, so the figures are the budget's arithmetic alone."""

import numpy as np
import pytest
from layering_protocol import ErrorCode, ProtocolError, Split
from layeringdiff.job_memory import STAGE2, estimate_job
from layeringdiff.limits import Limits, gib
from layeringdiff.models import ModelConfig, ModelManager
from layeringdiff.serve.jobs import Job, JobQueue
from layeringdiff.serve.worker import WorkerSpec
from layeringdiff.serve.workers import Pool
from layeringdiff.wire import from_array

SERVER, HELPER, OTHER = 300 << 20, 20 << 20, 500 << 20  # the server's RSS, its resource tracker's, another job's
WEIGHTS = 3 << 20  # the LaMa folder's bytes here


def pool(max_memory: int, config: ModelConfig | None = None) -> Pool:
    config = config or ModelConfig()
    specs = [WorkerSpec(i, config, threads=1, max_pixels=1 << 24) for i in range(2)]
    made = Pool(specs, JobQueue(), Limits.make(max_memory=max_memory), ModelManager(config), None, "",
                lambda: SERVER)
    made.helpers = [lambda: HELPER]
    made.workers[1].reserved = OTHER  # the other worker's job, by its estimate
    return made


def job(models: tuple[str, ...] = (), side: int = 256) -> Job:
    image = np.zeros((side, side, 4), np.float32)
    mask = np.zeros((side, side), np.float32)
    mask[side // 4:-side // 4, side // 4:-side // 4] = 1.0
    options = {"fill": "lama"} if models else {}
    message = Split(from_array(image, "u8", "BGRA"), mask=from_array(mask, "u8", "L"), options=options)
    return Job("j1", b"peer", message, models=models)


def test_a_worker_s_share_is_the_budget_less_the_server_its_helpers_and_the_other_workers():
    budget = 2 << 30
    made = pool(budget)
    assert made.share(made.workers[0]) == budget - SERVER - HELPER - OTHER
    assert made.share(made.workers[1]) == budget - SERVER - HELPER  # the first worker idle: nothing of it counts


def test_a_job_that_just_fits_is_reserved_and_one_byte_less_room_refuses_it_saying_what_is_in_use():
    estimate = estimate_job(job().message)
    need = estimate.nbytes
    exact = SERVER + HELPER + OTHER + need  # the budget that leaves the first worker exactly the job's estimate
    made = pool(exact)
    worker = made.workers[0]
    worker._check_room(job())
    assert worker.reserved == need
    tight = pool(exact - 1)
    with pytest.raises(ProtocolError) as info:
        tight.workers[0]._check_room(job())
    assert info.value.code == ErrorCode.TOO_LARGE
    in_use = SERVER + HELPER + OTHER  # the budget less what it leaves this worker
    assert estimate.what == "a 256x256 split"
    assert info.value.text == (f"a 256x256 split needs about {gib(need)} of memory; the backend's budget is "
                               f"{gib(exact - 1)} (--max-memory), {gib(in_use)} of it in use")
    assert tight.workers[0].reserved == 0


def test_a_model_job_counts_the_weights_its_worker_has_not_loaded_yet(tmp_path):
    (tmp_path / "model.onnx").write_bytes(bytes(WEIGHTS))
    config = ModelConfig(paths={"lama": str(tmp_path)})
    made = pool(8 << 30, config)
    worker = made.workers[0]
    worker._check_room(job(("lama",)))
    first = worker.reserved
    assert first == estimate_job(job(("lama",)).message, lambda name: WEIGHTS).nbytes
    worker.loaded = {"lama"}  # loaded: its weights are in the worker's memory already
    worker._check_room(job(("lama",)))
    assert first - worker.reserved == WEIGHTS


def test_a_model_job_whose_model_is_missing_says_so_before_its_size(tmp_path):
    from layeringdiff.models import ModelMissing

    config = ModelConfig(paths={"lama": str(tmp_path / "nowhere")})
    with pytest.raises(ModelMissing, match="model 'lama'"):
        pool(1 << 20, config).workers[0]._check_room(job(("lama",)))  # a budget it could never fit: missing first


def phrase_job(side: int = 256) -> Job:
    """Split by phrase: the stage-2 models, which see the whole image (their working memory follows its pixels on
    the CPU, and is the GPU's on a GPU)."""
    image = np.zeros((side, side, 4), np.float32)
    return Job("j2", b"peer", Split(from_array(image, "u8", "BGRA"), phrase="cat"), models=STAGE2)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_model_job_s_working_memory_counts_where_its_worker_runs_it(tmp_path, device):
    """A worker set to a GPU keeps the stage-2 models' working memory out of the budget (the RAM's); on the CPU it
    counts. No GPU is needed: the worker's device is its configuration's."""
    import importlib.util

    from layeringdiff.models import REGISTRY

    if any(importlib.util.find_spec(m) is None for n in STAGE2 for m in REGISTRY[n].packages):
        pytest.skip("the stage-2 models need the ml extra")
    for name in STAGE2:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"")  # a folder holding weights is one to use
    config = ModelConfig(paths={n: str(tmp_path / n) for n in STAGE2}, device=device)
    worker = pool(64 << 30, config).workers[0]
    worker._check_room(phrase_job())
    on_gpu = device == "cuda"
    assert worker.reserved == estimate_job(phrase_job().message, lambda name: 0, on_gpu=on_gpu).nbytes
    other = estimate_job(phrase_job().message, lambda name: 0, on_gpu=not on_gpu).nbytes
    assert (worker.reserved < other) == on_gpu


def test_a_lama_job_on_a_gpu_worker_keeps_its_cpu_working_memory(tmp_path):
    """LaMa always runs on the CPU: a GPU worker counts its fixed working memory all the same, and the job is not
    reckoned as a GPU one (nor is a GPU model job on a CPU worker)."""
    (tmp_path / "model.onnx").write_bytes(bytes(WEIGHTS))
    config = ModelConfig(paths={"lama": str(tmp_path)}, device="cuda")
    worker = pool(64 << 30, config).workers[0]
    worker._check_room(job(("lama",)))
    assert worker.reserved == estimate_job(job(("lama",)).message, lambda name: WEIGHTS, on_gpu=False).nbytes


@pytest.fixture
def running_worker_memory():
    """A pool whose first worker is a live process holding memory (a child that sleeps): its RSS counts."""
    import multiprocessing
    import time

    from layeringdiff.peers import Rss

    def make(max_memory: int) -> Pool:
        made = pool(max_memory)
        worker = made.workers[0]
        proc = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,), daemon=True)
        proc.start()
        worker.proc, worker.rss = proc, Rss(proc.pid)
        started.append(worker)
        readings = [-1]
        for _ in range(200):  # until its start-up is over: the same RSS for half a second
            readings.append(worker.memory())
            if len(readings) > 10 and len(set(readings[-10:])) == 1:
                break
            time.sleep(0.05)
        return made

    started: list = []
    yield make
    for worker in started:
        worker.kill()  # the worker's own way: the process killed, its RSS descriptor closed


def test_the_worker_s_own_memory_is_taken_from_its_share_once(running_worker_memory):
    need = estimate_job(job().message).nbytes
    made = running_worker_memory(1)
    worker = made.workers[0]
    held = worker.memory()  # the live process's RSS, some MB
    assert 0 < held < 256 << 20
    # room for the job and one and a half times the worker's memory: enough when that memory is taken once,
    # not when it is taken twice (as its own and as another worker's)
    made.limits = Limits.make(max_memory=SERVER + HELPER + OTHER + need + held + held // 2)
    worker._check_room(job())
    assert abs(worker.reserved - (held + need)) < held // 4  # reserved: the RSS its job may reach
    tight = running_worker_memory(SERVER + HELPER + OTHER + need)  # the job alone would fit, with the worker not
    with pytest.raises(ProtocolError, match="too_large"):
        tight.workers[0]._check_room(job())
