import pytest

from jaxsvd.pruning import Phases, Schedule


def test_recurring_schedule_stops_before_finetune():
  phases = Phases(num_epochs=10, finetune_epochs=2)
  every2 = Schedule(every=2, start=2)
  assert [e for e in range(1, 11) if every2.due(e, phases.last_train_epoch)] == [2, 4, 6, 8]
  assert [e for e in range(1, 11) if phases.in_finetune(e)] == [9, 10]
  bounded = Schedule(every=3, start=1, stop=5)
  assert [e for e in range(1, 11) if bounded.due(e, phases.last_train_epoch)] == [1, 4]
  assert [e for e in range(1, 11) if Schedule.once(8).due(e, phases.last_train_epoch)] == [8]
  assert not Schedule.once(9).due(9, phases.last_train_epoch)  # in the fine-tune phase: never


@pytest.mark.parametrize("kwargs, message", [
    (dict(every=0), "pruning.every must be an int >= 1"), (dict(start=0), "pruning.start"),
    (dict(stop=1.5), "pruning.stop")])
def test_bad_schedule_names_the_field(kwargs, message):
  with pytest.raises(ValueError, match=message):
    Schedule.from_config(kwargs, "pruning")


def test_finetune_must_leave_training_epochs():
  with pytest.raises(ValueError, match="finetune_epochs=4 leaves no training epochs"):
    Phases(num_epochs=4, finetune_epochs=4)
