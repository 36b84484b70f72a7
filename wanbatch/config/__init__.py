"""The typed config: `schema` (the top level and the cache, executor, stitch and encode groups) and `backends`
(one schema per kind of backend) hold every option, its type and its default; `checks` is the one place a
value is checked and worded; `load` composes a project into a `WanbatchConfig`."""
