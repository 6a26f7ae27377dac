# Prices per action: an edit may carry its own price; every existing price prices generations.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0003_dailyusagerollup_provider_cost'),
    ]

    operations = [
        migrations.AddField(
            model_name='priceconfig',
            name='action',
            field=models.CharField(choices=[('generate', 'Generate'), ('edit', 'Edit')], default='generate', max_length=8),
        ),
        migrations.RemoveConstraint(
            model_name='priceconfig',
            name='price_config_unique',
        ),
        migrations.AddConstraint(
            model_name='priceconfig',
            constraint=models.UniqueConstraint(fields=('model', 'action', 'quality', 'size'), name='price_config_unique'),
        ),
        migrations.AlterModelOptions(
            name='priceconfig',
            options={'ordering': ['model__name', 'action', 'quality', 'size']},
        ),
    ]
