"""How the population runner talks to its peers: in process, or over ``torch.distributed``.

The runner is written once against :class:`Comm`. ``Local`` is a population in one process;
``TorchComm`` shards members over the ranks of a process group that ``torchrun`` set up::

    torchrun --standalone --nproc-per-node=2 -m rlsched run CONFIG.toml

Member ``i`` starts on rank ``i % world``. Per generation (decision interval):

    rank 0   decides for every member (the agent and its RNG live on rank 0 only), and
             places the members on ranks to balance their predicted training time  -> broadcast
    holders  send each donor's job state to the ranks that host its recipients,
             and a moved member's state to its new rank                            -> send/recv
    all      train and evaluate their own members, then share the new records      -> all_gather

Everything that crosses is JSON text or ``torch.save`` bytes read back with ``weights_only=True``:
no pickle, not even between our own processes. gloo on CPU, NCCL on GPU (tensors on the rank's
CUDA device).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a typed value crosses ranks: ``encode`` to plain JSON values and ``decode`` back.
    In process nothing is encoded: the runner works on typed values throughout."""

    encode: Callable[[T], Any]
    decode: Callable[[Any], T]


PLAIN: Codec[Any] = Codec(lambda v: v, lambda v: v)  # already plain JSON values


class Comm(Protocol):
    """The collectives the runner needs; ``Local`` and ``TorchComm`` implement it."""

    rank: int
    world: int

    def from_root(self, make: Callable[[], T], codec: Codec[T] = PLAIN) -> T: ...

    def all_gather(self, value: T, codec: Codec[T] = PLAIN) -> list[T]: ...

    def exchange(
        self, states: dict[int, dict[str, Any]], wanted: dict[int, set[int]], holders: list[int]
    ) -> dict[int, Any]: ...

    def barrier(self) -> None: ...


class Local:
    """A whole population in this process: every collective is the identity."""

    rank, world = 0, 1

    def from_root(self, make: Callable[[], T], codec: Codec[T] = PLAIN) -> T:
        return make()

    def all_gather(self, value: T, codec: Codec[T] = PLAIN) -> list[T]:
        return [value]

    def exchange(
        self, states: dict[int, dict[str, Any]], wanted: dict[int, set[int]], holders: list[int]
    ) -> dict[int, Any]:
        return states

    def barrier(self) -> None:
        pass


def state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class TorchComm:
    """Members sharded over the ranks of the default ``torch.distributed`` process group."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )

    # -- bytes ------------------------------------------------------------------------------
    def _tensor(self, data: bytes) -> torch.Tensor:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)

    def _broadcast_bytes(self, data: bytes | None) -> bytes:
        size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=self.device)
        self.dist.broadcast(size, src=0)
        buffer = (
            self._tensor(data)
            if data is not None
            else torch.empty(int(size), dtype=torch.uint8, device=self.device)
        )
        self.dist.broadcast(buffer, src=0)
        return buffer.cpu().numpy().tobytes()

    # -- the collectives --------------------------------------------------------------------
    def from_root(self, make: Callable[[], T], codec: Codec[T] = PLAIN) -> T:
        """``make()`` on rank 0, its value on every rank. An error on rank 0 reaches all ranks."""
        payload = None
        if self.rank == 0:
            try:
                payload = json.dumps({"value": codec.encode(make())}, allow_nan=True).encode()
            except Exception as error:  # every rank must leave the collective, then raise alike
                kind = "ValueError" if isinstance(error, ValueError) else "RuntimeError"
                self._broadcast_bytes(json.dumps({"error": str(error), "kind": kind}).encode())
                raise
        message = json.loads(self._broadcast_bytes(payload))
        if "error" in message:  # bad input stays a ValueError (one line, exit 2, on every rank)
            raise (ValueError if message["kind"] == "ValueError" else RuntimeError)(message["error"])
        return codec.decode(message["value"])

    def all_gather(self, value: T, codec: Codec[T] = PLAIN) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        data = json.dumps(codec.encode(value), allow_nan=True).encode()
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        self.dist.all_gather(sizes, size)
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        padded[: len(data)] = self._tensor(data)
        buffers = [torch.empty_like(padded) for _ in range(self.world)]
        self.dist.all_gather(buffers, padded)
        return [codec.decode(json.loads(b[: int(s)].cpu().numpy().tobytes())) for b, s in zip(buffers, sizes)]

    def exchange(
        self, states: dict[int, dict[str, Any]], wanted: dict[int, set[int]], holders: list[int]
    ) -> dict[int, Any]:
        """The job states this rank needs: ``states`` are the ones it holds, ``wanted`` maps a member
        to the ranks that need its state, ``holders`` each member's rank (both the same on every
        rank). Point to point: a state travels once to each rank that needs it, and nowhere else."""
        out = {j: s for j, s in states.items() if self.rank in wanted.get(j, set())}
        if not any(ranks - {holders[j]} for j, ranks in wanted.items()):
            return out  # nothing crosses ranks this generation (every rank knows it alike)
        sends = {j: state_bytes(s) for j, s in states.items() if wanted.get(j, set()) - {self.rank}}
        sizes: dict[int, int] = {}
        for table in self.all_gather({str(j): len(b) for j, b in sends.items()}):
            sizes.update({int(j): n for j, n in table.items()})
        ops, received = [], {}
        for j in sorted(wanted):
            source = holders[j]
            for target in sorted(wanted[j] - {source}):
                if source == self.rank:
                    ops.append(self.dist.P2POp(self.dist.isend, self._tensor(sends[j]), target, tag=j))
                elif target == self.rank:
                    received[j] = torch.empty(sizes[j], dtype=torch.uint8, device=self.device)
                    ops.append(self.dist.P2POp(self.dist.irecv, received[j], source, tag=j))
        if ops:
            for work in self.dist.batch_isend_irecv(ops):
                work.wait()
        out.update({j: state_from_bytes(t.cpu().numpy().tobytes()) for j, t in received.items()})
        return out

    def barrier(self) -> None:
        self.dist.barrier()


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def restart_count() -> int:
    """How many times ``torchrun`` has restarted this worker group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def launch_id() -> str | None:
    """The id of this ``torchrun`` launch: the same across its elastic restarts."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def shutdown() -> None:
    """Tear down the process group, if this process set one up."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current_comm() -> Comm:
    """``TorchComm`` when launched by ``torchrun`` (initialising the process group on first use:
    NCCL when CUDA is available, else gloo), ``Local`` otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return TorchComm()
    if not under_torchrun():
        return Local()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        backend, store=_attempt_store(rank, world), rank=rank, world_size=world, timeout=collective_timeout()
    )
    return TorchComm()


def collective_timeout():
    """How long a rank may wait in a collective: ranks wait for the slowest one's interval every
    generation, so the default is generous (``RLSCHED_COLLECTIVE_TIMEOUT_MINUTES``, default 180).
    A dead worker does not wait this long: torchrun stops the group as soon as one exits."""
    from datetime import timedelta

    minutes = os.environ.get("RLSCHED_COLLECTIVE_TIMEOUT_MINUTES", "180")
    try:
        value = float(minutes)
        if not value > 0:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"RLSCHED_COLLECTIVE_TIMEOUT_MINUTES: expected a positive number of minutes, got {minutes!r}"
        ) from None
    return timedelta(minutes=value)


def _attempt_store(rank: int, world: int):
    """torchrun's store, under a prefix per restart attempt: after ``--max-restarts`` brings the
    workers back, no rank can read an address its dead predecessor published (a stale one made
    gloo's connect hang or be refused)."""
    from datetime import timedelta

    import torch.distributed as dist

    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # the agent hosts the server
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent and rank == 0,
        timeout=timedelta(minutes=10),
        multi_tenant=True,
    )
    return dist.PrefixStore(f"rlsched/attempt-{restart_count()}", store)
