#!/usr/bin/env bash
# moalign strategies inside verl 0.9.1: Math500 (shipped with moalign), accuracy / conciseness / clarity,
# vLLM rollout, FSDP actor, verl's v1 trainer. One GPU, about 10 minutes with the defaults below (docs/verl.md).
#
#   pip install torch==2.11.0 "verl[vllm,fsdp]==0.9.1" && pip install -e ".[verl]"   # on the GPU machine
#   bash examples/verl/run_math500.sh                       # CTWA (the default STRATEGY)
#   STRATEGY=hypervolume bash examples/verl/run_math500.sh  # any strategy moalign runs under verl
#   STRATEGY=fixed PARAMS='{weights: [0.5, 0.25, 0.25]}' bash examples/verl/run_math500.sh   # = verl's GDPO
#   ROLLOUT=hf bash examples/verl/run_math500.sh            # Hugging Face generate: no vLLM needed (slower)
#   DEVICE=cpu MODEL_PATH=/path/to/small/model STEPS=2 bash examples/verl/run_math500.sh   # CPU, HF rollout
#
# Extra Hydra overrides go at the end of the command line and win (e.g. trainer.total_training_steps=50).
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-0.5B-Instruct}
NGPUS=${NGPUS:-1}
STRATEGY=${STRATEGY:-ctwa}
PARAMS=${PARAMS:-"{}"}
STEPS=${STEPS:-12}
OUT=${OUT:-runs/verl_${STRATEGY}}
DEVICE=${DEVICE:-cuda}
ROLLOUT=${ROLLOUT:-$([ "${DEVICE}" = cpu ] && echo hf || echo vllm)}   # hf: moalign's HF generate rollout

DATA_DIR=$(python3 -c "from moalign.data import MATH500_DIR; print(MATH500_DIR)")
REWARD_FILE=$(python3 -c "import moalign.integrations.verl.reward as r; print(r.__file__)")

ARGS=(
    # moalign: estimator, reward manager and trainer, all registered by the plugin (verl.plugins entry point)
    algorithm.adv_estimator=moalign
    trainer.v1.trainer_mode=moalign
    reward.reward_manager.name=moalign
    "+algorithm.moalign.objectives=[accuracy,conciseness,clarity]"   # weight order of both papers
    +algorithm.moalign.strategy="${STRATEGY}"
    "+algorithm.moalign.strategy_params=${PARAMS}"
    +algorithm.moalign.aggregation=normalize_then_sum                # GDPO's aggregation
    algorithm.norm_adv_by_std_in_grpo=True
    algorithm.use_kl_in_reward=False
    # data: the 300/100/100 split of docs/design.md, in verl's parquet schema
    data.train_files="${DATA_DIR}/train.parquet"
    data.val_files="${DATA_DIR}/val.parquet"
    data.train_batch_size=16
    data.max_prompt_length=512
    data.max_response_length=512
    data.filter_overlong_prompts=True
    data.truncation=error
    # model and actor
    actor_rollout_ref.model.path="${MODEL_PATH}"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.ppo_mini_batch_size=16
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8
    actor_rollout_ref.actor.use_kl_loss=False
    # rollout: 8 completions per prompt, as both papers; greedy validation (val_kwargs defaults: do_sample off)
    actor_rollout_ref.rollout.name="${ROLLOUT}"
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.tensor_model_parallel_size=1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16
    # trainer: validation every 4 steps feeds the hypervolume strategy; a checkpoint at the end holds its state
    trainer.logger='["console"]'
    trainer.project_name=moalign_verl
    trainer.experiment_name="${STRATEGY}"
    trainer.default_local_dir="${OUT}/checkpoints"
    trainer.n_gpus_per_node="${NGPUS}"
    trainer.nnodes=1
    trainer.val_before_train=True
    trainer.test_freq=4
    trainer.save_freq="${STEPS}"
    trainer.total_epochs=1
    trainer.total_training_steps="${STEPS}"
)

if [ "${DEVICE}" = cpu ]; then
    # verl on CPU through moalign.integrations.verl.cpu (docs/verl.md, "verl on CPU"): the CPU platform in every
    # process, one logical GPU for Ray's placement groups, FSDP2 on gloo, no flash-attn
    export VERL_USE_EXTERNAL_MODULES=moalign.integrations.verl.cpu
    ARGS+=(
        trainer.device=cpu
        trainer.n_gpus_per_node=1
        +ray_kwargs.ray_init.num_gpus=1
        ray_kwargs.ray_init.num_cpus=16
        +ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=moalign.integrations.verl.cpu
        transfer_queue.backend.SimpleStorage.num_data_storage_units=1
        actor_rollout_ref.actor.strategy=fsdp2
        actor_rollout_ref.ref.strategy=fsdp2
        +actor_rollout_ref.model.override_config.attn_implementation=sdpa
        actor_rollout_ref.model.use_remove_padding=False
        actor_rollout_ref.rollout.mode=async
        actor_rollout_ref.rollout.agent.num_workers=1
        reward.num_workers=1
        data.dataloader_num_workers=0
    )
fi

python3 -m verl.trainer.main_ppo "${ARGS[@]}" "$@"
