"""`--executor ray [--ray-address ADDR]`: tasks on a Ray cluster (extra `.[ray]`, imported only here).

Without an address Ray starts a local cluster in this process (`ray.init()`); with one it joins
that cluster, whose nodes must mount the batch's cache directory and see edgeopt on their path.
Compute tasks take one CPU. A timing task takes the node that carries the custom resource
`target:<name>` (a Ray worker started on the device itself: `ray start --resources
'{"target:arm-mobile": 1}'`), else a whole node (all of its CPUs), so nothing shares its cores.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from toolchain.errors import BadInput
from toolchain.executor import Task, WorkerLost, run_task

CONNECT_SECONDS = 90.0  # the address accepted a TCP connect (a Ray head, most likely): joining it is slow on a loaded machine


def import_ray():
    try:
        import ray
    except ImportError:
        raise BadInput("--executor ray needs Ray", "pip install 'edgeopt[ray]'") from None
    return ray


# A Ray head's GCS is a gRPC server, so HTTP/2: sent the client preface and an empty SETTINGS
# frame, it must answer with a SETTINGS frame first (RFC 9113, 3.4). Something else listening on
# the port (a silent socket, another protocol) fails this in seconds, where ray.init() would
# wait out its own ~90 s of retries.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS = 0x4
ANSWER_SECONDS = 10.0  # a GCS answers its handshake in milliseconds; 10 s leaves room for a loaded head


def check_reachable(address: str, timeout: float = 5.0, answer: float = ANSWER_SECONDS) -> None:
    """A cheap probe first: TCP connect, then the gRPC (HTTP/2) handshake a Ray GCS answers.
    ray.init() on an address nobody answers, or where something else listens, retries for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(
            f"--ray-address {address!r} is not HOST:PORT", "give the head's GCS address, e.g. 127.0.0.1:6379"
        )
    fix = "start one with `ray start --head --port PORT`, or drop --ray-address to run locally"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            if _tls():  # a TLS handshake comes first there: leave the check to ray.init()
                return
            problem = _h2_problem(sock, answer)
    except OSError as err:
        raise BadInput(f"no Ray cluster answers at {address} ({err.strerror or err})", fix) from None
    if problem:
        raise BadInput(f"no Ray cluster answers at {address} ({problem})", fix)


def _tls() -> bool:
    import os

    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def _h2_problem(sock: socket.socket, seconds: float) -> str | None:
    """None when the peer answers the HTTP/2 preface with a SETTINGS frame, else what it did."""
    import time

    deadline = time.monotonic() + seconds
    sock.sendall(H2_PREFACE)
    header = b""
    while len(header) < 9:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"the port accepts connections but gave no gRPC answer in {seconds:.0f} s: not a Ray GCS"
        sock.settimeout(left)
        try:
            chunk = sock.recv(9 - len(header))
        except TimeoutError:
            continue
        if not chunk:
            return "the port closed the connection on a gRPC handshake: not a Ray GCS"
        header += chunk
    if header[3] != H2_SETTINGS:
        return "the port answered something other than gRPC: not a Ray GCS"
    return None


def _ray_task(fn, args, ort_threads: int | None = None) -> dict[str, Any]:
    import ray

    result = run_task(fn, args, ort_threads)
    result["host"]["node"] = ray.get_runtime_context().get_node_id()
    return result


TASK_FUNCTION = _ray_task.__name__  # a worker running a task is titled ray::<this>


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.ray = import_ray()
        if address and address != "auto":
            check_reachable(address)
        self._init(address)
        # No retries inside Ray: run_graph retries a task whose worker or node died (WorkerLost),
        # bounded by MAX_RETRIES and counted in the batch's task table; an exception the task
        # itself raised is never retried: it would raise again.
        self._remote = self.ray.remote(max_retries=0, retry_exceptions=False)(_ray_task)

    def _init(self, address: str | None) -> None:
        failure: list[BaseException] = []

        def connect() -> None:
            try:
                self.ray.init(
                    address=address or None,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    ignore_reinit_error=True,
                )
            except Exception as err:  # noqa: BLE001 - reported below as one line
                failure.append(err)

        if not address:  # starting Ray here: slow on a loaded machine, and a timeout would orphan it
            connect()
            if failure:
                raise BadInput(
                    f"cannot start Ray locally ({type(failure[0]).__name__}: "
                    f"{str(failure[0]).splitlines()[0]})",
                    "see `ray start --head` for the cause",
                )
            return
        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(CONNECT_SECONDS)
        if thread.is_alive() or failure:
            reason = (
                f"{type(failure[0]).__name__}: {str(failure[0]).splitlines()[0]}"
                if failure
                else f"no answer in {CONNECT_SECONDS:.0f} s"
            )
            raise BadInput(
                f"cannot join the Ray cluster at {address} ({reason})",
                "check the address (`ray status` on the head), or drop --ray-address to run locally",
            )

    def may_start(self, task: Task, busy: bool, running: int) -> bool:
        return True  # placement (resources) keeps timing tasks off busy nodes

    def placement(self, task: Task) -> dict[str, Any]:
        if task.timing_target is None:
            return {"num_cpus": 1}
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        wanted = f"target:{task.timing_target}"
        carriers = [n for n in nodes if n["Resources"].get(wanted)]
        if carriers:
            return {"num_cpus": max(n["Resources"].get("CPU", 1) for n in carriers), "resources": {wanted: 1}}
        return {"num_cpus": max((n["Resources"].get("CPU", 1) for n in nodes), default=1)}

    def submit(self, task: Task):
        placement = self.placement(task)
        # a task sharing a node gets the CPUs it asked for; a timing task has the node to itself
        threads = placement["num_cpus"] if task.timing_target is None else None
        return self._remote.options(**placement).remote(task.fn, task.args, threads)

    def wait(self, handles: list) -> list:
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def collect(self, handle) -> dict[str, Any]:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(handle)
        except exceptions.RayTaskError as err:  # the task's own exception: raise it as itself
            cause = getattr(err, "cause", None)
            raise (cause if isinstance(cause, BaseException) else err) from None
        except exceptions.RayError as err:  # the worker, its node or the task's owner went away
            raise WorkerLost(str(err).splitlines()[0] if str(err) else type(err).__name__) from None

    def close(self) -> None:
        self.ray.shutdown()
