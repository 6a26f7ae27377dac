from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.ledger.postgres import functions_sql

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION IF EXISTS imagegate_spend_reserve")
        cursor.execute("DROP FUNCTION IF EXISTS imagegate_spend_settle")
        for statement in functions_sql():
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("billing", "0009_lighter_hot_writes")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
