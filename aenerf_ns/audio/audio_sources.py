"""Where live audio comes from: a wav file another program is still writing, or a socket on this machine.

Both deliver 16 kHz mono audio, the rate the audio features work at, so nothing is resampled on the live path (a
chunk's samples go straight to `StreamingFeatures`): the socket as 16-bit PCM, the wav as 16-bit PCM or 32-bit
float. Each source is an iterator of float32 chunks that ends with the stream: the wav when it has stopped growing
for `idle_seconds`, the socket when the sender closes the connection. A float wav can hold NaN or infinite samples;
the first one ends the stream with an error naming its time (16-bit PCM cannot hold either).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import TARGET_SAMPLE_RATE, AudioError, check_finite

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Addresses a stream socket may bind to without `allow_remote`."""
CONVERT_HINT = "convert it with: ffmpeg -i IN -ac 1 -ar 16000 -c:a pcm_s16le OUT.wav"


def pcm16_to_float(data: bytes) -> Float[np.ndarray, "samples"]:
    """Little-endian 16-bit PCM bytes as float32 in [-1, 1) (the scaling soundfile uses for wav files)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


SAMPLE_TYPES = {1: "<i2", 3: "<f4"}
"""numpy sample type of each wav format code a stream accepts: 16-bit PCM and 32-bit float."""


def samples_to_float(data: bytes, sample_type: str) -> Float[np.ndarray, "samples"]:
    """Little-endian 16-bit PCM (scaled to [-1, 1), as soundfile reads wav files) or 32-bit float bytes as float32."""
    if sample_type == "<i2":
        return pcm16_to_float(data)
    return np.frombuffer(data, dtype=sample_type).astype(np.float32)


def parse_wav_header(head: bytes, name: str = "wav") -> tuple[int, str] | None:
    """(offset of the sample data, numpy sample type) of a 16 kHz mono wav of 16-bit PCM or 32-bit float samples;
    None while the header is still incomplete.

    Raises AudioError naming the problem for anything else (not a wav, another sample format, rate or layout).
    """
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioError(f"{name} is not a RIFF/WAVE file; {CONVERT_HINT}")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk_id == b"fmt ":
            if pos + 8 + 16 > len(head):
                return None
            fmt = struct.unpack("<HHIIHH", head[pos + 8 : pos + 24])
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{name}: the data chunk comes before the format chunk")
            return pos + 8, _check_format(fmt, name)
        pos += 8 + size + (size & 1)
    return None


def _check_format(fmt: tuple[int, ...], name: str) -> str:
    """The numpy sample type of an accepted format (the extensible code 0xFFFE is taken as PCM)."""
    code, channels, rate, _, _, bits = fmt
    pcm = code in (1, 0xFFFE) and bits == 16
    if not (pcm or (code == 3 and bits == 32)) or channels != 1 or rate != TARGET_SAMPLE_RATE:
        kind = "PCM" if code in (1, 0xFFFE) else "float" if code == 3 else f"format code {code}"
        raise AudioError(
            f"{name} is {kind} {bits}-bit, {channels} channel(s), {rate} Hz; a stream must be mono, "
            f"{TARGET_SAMPLE_RATE} Hz, 16-bit PCM (or 32-bit float for a wav file): {CONVERT_HINT}"
        )
    return SAMPLE_TYPES[1] if pcm else SAMPLE_TYPES[3]


class GrowingWav:
    """Follows a wav file as another program appends to it; ends when it has not grown for `idle_seconds`.

    A NaN or infinite sample (possible in a float wav) raises AudioError naming the file and the sample's time.
    """

    def __init__(self, path: Path | str, idle_seconds: float = 1.0, poll_seconds: float = 0.01) -> None:
        self.path = Path(path)
        self.idle_seconds = idle_seconds
        self.poll_seconds = poll_seconds
        self.stopped = False

    def __iter__(self) -> Iterator[Float[np.ndarray, "samples"]]:
        last_growth = time.monotonic()
        while not self.path.is_file():
            if time.monotonic() - last_growth > self.idle_seconds:
                raise AudioError(f"stream wav {self.path} does not exist")
            time.sleep(self.poll_seconds)
        layout, leftover, samples_read = None, b"", 0
        with open(self.path, "rb") as f:
            head = b""
            while not self.stopped:
                data = f.read()
                if data:
                    last_growth = time.monotonic()
                    if layout is None:
                        head += data
                        layout = parse_wav_header(head, str(self.path))
                        if layout is None:
                            continue
                        data = head[layout[0] :]
                    sample_type = layout[1]
                    width = np.dtype(sample_type).itemsize
                    data = leftover + data
                    whole = len(data) - len(data) % width
                    leftover = data[whole:]
                    if whole:
                        samples = samples_to_float(data[:whole], sample_type)
                        check_finite(samples, TARGET_SAMPLE_RATE, f"stream wav {self.path}", samples_read)
                        samples_read += len(samples)
                        yield samples
                elif time.monotonic() - last_growth > self.idle_seconds:
                    if layout is None:
                        raise AudioError(f"stream wav {self.path} never got a complete header")
                    return
                else:
                    time.sleep(self.poll_seconds)

    def stop(self) -> None:
        self.stopped = True


class LocalSocket:
    """A TCP server on this machine: one sender at a time writes raw 16 kHz mono 16-bit little-endian PCM.

    16-bit integers cannot carry NaN or infinity, so there is nothing non-finite here to refuse: a sender holding
    float audio must check it before converting, since the conversion turns such samples into ordinary numbers.

    Binding to another address than 127.0.0.1 would let anyone who can reach it drive the model, so it needs
    `allow_remote=True`. Port 0 picks a free port (`port` says which).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False) -> None:
        if host not in LOCAL_HOSTS and not allow_remote:
            raise AudioError(
                f"refusing to listen for audio on {host}: anyone who can reach it could drive the model; "
                "use 127.0.0.1 (the default) or pass allow_remote=True"
            )
        if not 0 <= int(port) <= 65535:
            raise AudioError(f"stream port must be 0-65535, got {port}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.socket(family, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._server.bind((host, int(port)))
        except OSError as exc:
            self._server.close()
            raise AudioError(f"cannot listen for audio on {host}:{port}: {exc}") from None
        self._server.listen(1)
        self._server.settimeout(0.2)
        self.host = host
        self.port = int(self._server.getsockname()[1])
        self.stopped = False

    def __iter__(self) -> Iterator[Float[np.ndarray, "samples"]]:
        try:
            conn = None
            while conn is None and not self.stopped:
                try:
                    conn, _ = self._server.accept()
                except TimeoutError:
                    continue
            if conn is None:
                return
            conn.settimeout(0.2)
            leftover = b""
            with conn:
                while not self.stopped:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        return  # the sender closed the connection: end of stream
                    data = leftover + data
                    whole = len(data) - len(data) % 2
                    leftover = data[whole:]
                    if whole:
                        yield pcm16_to_float(data[:whole])
        finally:
            self._server.close()

    def stop(self) -> None:
        self.stopped = True


def open_source(address: str, allow_remote: bool = False) -> GrowingWav | LocalSocket:
    """`tcp://HOST:PORT` listens on a socket; anything else is the path of a (growing) wav file."""
    address = address.strip()
    if not address:
        raise AudioError("no stream given: enter a wav path or tcp://127.0.0.1:PORT")
    if address.startswith("tcp://"):
        host, sep, port = address[len("tcp://") :].rpartition(":")
        if not sep or not port.isdigit():
            raise AudioError(f"stream address {address!r} must look like tcp://127.0.0.1:PORT")
        return LocalSocket(host.strip("[]"), int(port), allow_remote)
    if "://" in address:
        raise AudioError(f"unknown stream address {address!r}: give a wav path or tcp://127.0.0.1:PORT")
    return GrowingWav(address)
