"""dualdc's Invoke tasks: ``invoke --list`` shows them, ``invoke --help TASK`` explains one.

Each area keeps its tasks in ``src/dualdc/tasks/<area>.py``; this file only assembles them
into one explicit Collection, in the order data flows: model, hosts, stacks, lab,
orchestration, packaging, development.
"""

from invoke import Collection

from dualdc.tasks import dev, dr, model, options, package
from dualdc.tasks import hosts as hosts_tasks
from dualdc.tasks import lab as lab_tasks
from dualdc.tasks import ops as ops_tasks
from dualdc.tasks import stacks as stacks_tasks

ns = Collection()
ns.add_task(model.validate)
ns.add_task(model.schema_, name="schema")
ns.add_task(model.inventory_, name="inventory")
ns.add_task(hosts_tasks.converge)
ns.add_task(stacks_tasks.render_, name="render")
ns.add_task(stacks_tasks.preview)
ns.add_collection(lab_tasks.lab_ns)
ns.add_collection(dr.dr_ns)
ns.add_task(ops_tasks.deploy)
ns.add_task(ops_tasks.drift)
ns.add_task(ops_tasks.diagram)
ns.add_task(ops_tasks.comment)
ns.add_task(package.collection)
ns.add_task(package.ee)
ns.add_task(dev.test)
ns.add_task(dev.lint)
ns.add_task(dev.bench)
ns.configure(options.DEFAULTS)
