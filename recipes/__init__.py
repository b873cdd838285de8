"""The shipped fine-tune recipes: one commented YAML file per run (``builtin.yaml``, ...).

Each file's first comment line names the run; its ``# expect:`` line says what the run
should reach and roughly how long it takes, and whether that was measured or is an
expectation (``keras-vgg recipes`` prints it). Run one by name: ``keras-vgg finetune
--config tf_flowers`` or ``load_recipe("tf_flowers")``.

This file only makes the folder a package: installed, it is ``keras_vgg.recipe_files``
(pyproject.toml maps that name here), which is how ``keras_vgg.finetune`` finds the files
with importlib.resources after an editable or a plain install.
"""
