"""When operators may run: one place for the checks (greyed-out buttons say why)."""

from ..addon import jobs


class NeedsPlates(jobs.OperatorMixin):
    """The Source and Reference are set; engine-job operators also wait for a running job."""

    @classmethod
    def poll(cls, context):
        fr = context.scene.film_recovery
        if not (fr.source.path and fr.reference.path):
            cls.poll_message_set("Set the Source and Reference plates first (Ingest panel)")
            return False
        if issubclass(cls, jobs.EngineJobOperator) and jobs.active_job() is not None:
            cls.poll_message_set("A Film Recovery job is running: wait or cancel it")
            return False
        return True


class NeedsDataset(NeedsPlates):
    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        if not context.scene.film_recovery.dataset_dir:
            cls.poll_message_set("Export the dataset first (Ground Truth panel)")
            return False
        return True
