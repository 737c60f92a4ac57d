"""The ``tf.data`` input path: the DataGenerator's batches from a parallel ``tf.data`` pipeline.

    schedule (image ids, Python) -> read_sample (numpy_function, parallel)
      -> mold_sample (graph map, parallel) -> padded_batch -> batch_inputs -> prefetch

The stages are ``data/samples.py``'s and the schedule (order, per-image
random draws, replacement of unreadable images) is a DataGenerator's, so a
seeded ``to_tf_dataset`` yields exactly the batches of a seeded
``DataGenerator`` of the same arguments.
"""

import tensorflow as tf

from mrcnn_tf.data.generator import DataGenerator
from mrcnn_tf.data.samples import batch_inputs, mold_sample, sample_spec

AUTOTUNE = tf.data.AUTOTUNE


def to_tf_dataset(dataset, config, shuffle=True, augmentation=None, seed=None,
                  batches_per_epoch=None, skip_bad_images=False, num_parallel_calls=AUTOTUNE,
                  prefetch=AUTOTUNE):
    """A ``tf.data.Dataset`` of training batches for ``model.fit``, one epoch per iteration.

    Args:
        dataset: a prepared Dataset.
        config: the model Config (BATCH_SIZE images per batch).
        shuffle: a new image order every epoch (each iteration of the dataset
            is the next epoch, as Keras iterates it once per epoch).
        augmentation: callable ``(image, masks, rng) -> (image, masks)`` on
            the original-size uint8 image and bool masks (numpy, run in
            parallel threads: it must be thread-safe).
        seed: makes order, crops and augmentation reproducible; the batches
            are then those of ``DataGenerator(dataset, config, shuffle,
            augmentation, seed, batches_per_epoch)``.
        batches_per_epoch, skip_bad_images: as DataGenerator.
        num_parallel_calls: threads reading and molding images.
        prefetch: batches prepared ahead of the training step.
    Returns:
        tf.data.Dataset of dicts keyed like the training model's inputs
        (see DataGenerator), with a known cardinality (batches per epoch).
        Its ``schedule`` attribute is the DataGenerator that orders it:
        ``schedule.set_epoch(k)`` makes the next iteration epoch ``k``;
        ``schedule.skipped_images`` lists unreadable files.
    """
    schedule = DataGenerator(dataset, config, shuffle=shuffle, augmentation=augmentation,
                             seed=seed, batches_per_epoch=batches_per_epoch,
                             skip_bad_images=skip_bad_images)
    spec = sample_spec(config)
    names = list(spec)

    def slots():  # one epoch of (image id, epoch, batch index, slot) per iteration
        # The schedule's epoch: the next one after each full pass, or the one fit's
        # GeneratorEpoch callback sets (train() resuming at epoch k reads epoch k's data).
        epoch = schedule.epoch
        for index in range(len(schedule)):
            for slot, image_id in enumerate(schedule.scheduled_ids(index)):
                yield image_id, epoch, index, slot
        schedule.warn_skipped()
        schedule.set_epoch(epoch + 1)

    def read(image_id, epoch, index, slot):  # numpy, in a tf.data thread
        sample = schedule.read(int(image_id), int(index), int(slot), epoch=int(epoch))
        return [sample[name] for name in names]

    def read_and_mold(image_id, epoch, index, slot):
        values = tf.numpy_function(read, [image_id, epoch, index, slot],
                                   [spec[n].dtype for n in names], stateful=True)
        sample = {}
        for name, value in zip(names, values):
            value.set_shape(spec[name].shape)
            sample[name] = value
        return mold_sample(sample, config)

    slot_spec = tuple(tf.TensorSpec([], tf.int64) for _ in range(4))
    data = tf.data.Dataset.from_generator(slots, output_signature=slot_spec)
    data = data.map(read_and_mold, num_parallel_calls=num_parallel_calls, deterministic=True)
    data = data.padded_batch(schedule.batch_size, drop_remainder=True)
    data = data.map(lambda molded: batch_inputs(molded, config), num_parallel_calls=AUTOTUNE,
                    deterministic=True)
    data = data.apply(tf.data.experimental.assert_cardinality(len(schedule)))
    data = data.prefetch(prefetch)
    data.schedule = schedule  # order, epoch and skipped images, as a DataGenerator's
    return data
