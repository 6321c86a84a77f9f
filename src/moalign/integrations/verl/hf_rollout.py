"""A Hugging Face ``generate`` rollout for verl 0.9.1 (``actor_rollout_ref.rollout.name=hf``), registered through
verl's rollout registries: for CPU runs, and for GPU machines where vLLM/SGLang cannot be installed.

verl's rollout is a server per replica that answers ``generate(prompt_ids, sampling_params) -> TokenOutput``
(``LLMServerClient``), plus a worker-side adapter in the actor worker that receives the trained weights
(``BaseRollout.update_weights``, verl's ``naive`` checkpoint backend of the sync trainer). Here:

* :class:`HFRolloutServer` -- a Ray actor holding a ``transformers`` copy of the policy; one request at a time;
* :class:`HFReplica` -- the ``RolloutReplica`` that starts it next to the replica's workers (same node, same GPU
  when there is one);
* :class:`HFServerAdapter` -- the worker-side ``BaseRollout``; it sends the exported weights to its replica's server.

The plugin registers both under ``hf`` (``RolloutReplicaRegistry``, ``_ROLLOUT_REGISTRY[("hf", "async")]``) by name,
without importing this module: a Ray process that unpickles the server imports this module before verl, and
``import verl`` loads the plugin.

Sampling is reproducible: every request is seeded from the rollout seed, the weight version (verl's global step),
the prompt and how many times that prompt was already asked for at this version, so a resumed run samples what the
uninterrupted run sampled, whatever order verl's agent loop sends the requests in.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

__all__ = ["HFReplica", "HFRolloutServer", "HFServerAdapter", "request_seed"]

logger = logging.getLogger(__name__)

_NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


def server_name(replica_rank: int) -> str:
    return f"moalign_hf_rollout_server_{replica_rank}"


def request_seed(seed: int, version: int, prompt_ids: list[int], occurrence: int) -> int:
    """The sampling seed of one request: a hash of the rollout seed, the weight version, the prompt and the
    prompt's occurrence count at this version (63 bits)."""
    key = f"{seed}|{version}|{occurrence}|{','.join(map(str, prompt_ids))}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


class HFRolloutServer:
    """One replica's generation server: ``model.generate`` on the policy's current weights."""

    def __init__(self, config, model_config, replica_rank: int, cuda_visible_devices: str | None = None):
        if cuda_visible_devices:  # Ray left it unset (noset variable): see the replica's workers' device
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
        from transformers import AutoModelForCausalLM

        self.config = config
        self.replica_rank = replica_rank
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # the replica hands over the raw ``actor_rollout_ref.model`` block, the worker side verl's HFModelConfig
        path = getattr(model_config, "local_path", None) if not hasattr(model_config, "_get_node") else None
        path = path or model_config.path
        dtype = getattr(torch, config.dtype) if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        generation = self.model.generation_config
        self.eos_token_id = generation.eos_token_id
        self.pad_token_id = generation.pad_token_id if generation.pad_token_id is not None else self.eos_token_id
        self.version = -1  # verl's global step of the loaded weights; -1: the model path's weights
        self.requests: Counter = Counter()
        self.seed = int(getattr(config, "seed", 0) or 0)

    def load_weights(self, weights: dict[str, torch.Tensor], version: int | None) -> int:
        """Load the actor's exported weights (HF names); returns the number of tensors loaded."""
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        unexpected = [k for k in unexpected if k in weights]
        if unexpected:
            raise ValueError(f"the HF rollout got weights its model does not have: {unexpected[:5]}")
        self.version = -1 if version is None else int(version)
        self.requests.clear()
        return len(weights)

    def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str = "",
                 image_data: Any = None, video_data: Any = None, **kwargs: Any) -> TokenOutput:
        if image_data is not None or video_data is not None:
            raise ValueError("the HF rollout generates from text only; use vLLM or SGLang for images and video")
        params = dict(sampling_params)
        max_new = params.pop("max_tokens", params.pop("max_new_tokens", None)) or self.config.response_length
        max_new = max(1, min(int(max_new), int(self.config.response_length)))
        temperature = float(params.get("temperature", 1.0))
        key = tuple(prompt_ids)
        occurrence = self.requests[key]
        self.requests[key] += 1
        torch.manual_seed(request_seed(self.seed, self.version, list(prompt_ids), occurrence))
        top_k = int(params.get("top_k", -1) or -1)
        sample = temperature > 0
        inputs = torch.tensor([list(prompt_ids)], device=self.device)
        with torch.no_grad():
            out = self.model.generate(
                inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new, do_sample=sample,
                temperature=temperature if sample else None, top_p=float(params.get("top_p", 1.0)) if sample else None,
                top_k=top_k if sample and top_k > 0 else None, eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id, output_scores=bool(params.get("logprobs")), return_dict_in_generate=True)
        tokens = out.sequences[0, inputs.shape[1]:]
        log_probs = None
        if params.get("logprobs"):
            scores = torch.stack(out.scores, dim=0)[:, 0]  # (T, V), after the sampling processors
            log_probs = torch.log_softmax(scores.float(), -1).gather(-1, tokens[:, None])[:, 0].tolist()
        eos = {self.eos_token_id} if isinstance(self.eos_token_id, int) else set(self.eos_token_id or [])
        token_list = tokens.tolist()
        if eos & set(token_list):  # keep the EOS, drop generate's padding after it
            token_list = token_list[: next(i for i, t in enumerate(token_list) if t in eos) + 1]
            log_probs = log_probs[: len(token_list)] if log_probs is not None else None
        return TokenOutput(token_ids=token_list, log_probs=log_probs, stop_reason="completed",
                           extra_fields={"global_steps": self.version})

    # verl's server control calls (sleep, wake_up, KV cache, abort, profiling): a plain transformers model has no
    # device memory to free between steps and no request queue, so each is a no-op (set below the class)


def _no_op(self, *args, **kwargs) -> None:
    return None


for _name in ("wake_up", "sleep", "clear_kv_cache", "release_kv_cache", "resume_kv_cache", "resume_generation",
              "abort_all_requests", "start_profile", "stop_profile"):
    setattr(HFRolloutServer, _name, _no_op)


class HFReplica(RolloutReplica):
    """A rollout replica served by one :class:`HFRolloutServer` (tensor/pipeline parallel size 1)."""

    async def launch_servers(self):
        if self.world_size != 1:
            raise ValueError(f"the HF rollout runs one process per replica: set actor_rollout_ref.rollout."
                             f"tensor_model_parallel_size, data_parallel_size and pipeline_model_parallel_size to 1 "
                             f"(their product is {self.world_size})")
        node_id, devices = None, None
        if self.workers:
            node_id, devices = await self.workers[0].__ray_call__.remote(_node_and_devices)
        options: dict[str, Any] = {"name": server_name(self.replica_rank), "num_cpus": 0}
        if node_id is not None:
            options["scheduling_strategy"] = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False)
        if devices:
            options["runtime_env"] = {"env_vars": {_NOSET_CUDA: "1"}}
        server = ray.remote(HFRolloutServer).options(**options).remote(
            self.config, self.model_config, self.replica_rank, devices)
        await server.__ray_ready__.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-rollout-{self.replica_rank}"  # the router's key; no HTTP server


def _node_and_devices(_worker) -> tuple[str, str | None]:
    context = ray.get_runtime_context()
    gpus = context.get_accelerator_ids().get("GPU") or []
    return context.get_node_id(), (",".join(gpus) if gpus and torch.cuda.is_available() else None)


class HFServerAdapter(BaseRollout):
    """The actor worker's side of the HF rollout: forwards the trained weights to its replica's server."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.replica_rank = rank  # one process per replica (HFReplica checks it)
        self.is_leader_rank = True
        self.sleep_level = 0

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise ValueError(f"the HF rollout takes full named tensors (verl's naive checkpoint backend), got "
                             f"wire_format={wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise ValueError("the HF rollout needs merged weights: set actor_rollout_ref.model.lora.merge=True")
        state = {}
        for name, tensor in weights:
            if hasattr(tensor, "full_tensor"):  # a DTensor shard of FSDP2
                tensor = tensor.full_tensor()
            state[name] = tensor.detach().to("cpu", copy=True)
        server = ray.get_actor(server_name(self.replica_rank))
        await server.load_weights.remote(state, kwargs.get("global_steps"))
