"""Bronze routing, shared by every pipeline: parse each raw record with its contract
(lakehouse/contracts.py), validate it with the contract's rules and route it to accepted
or quarantine, with where it came from.

A source is turned into raw records first, one row per record with `raw_key`, `raw_value`
and its provenance columns:
- Kafka (`kafka_records`): topic, partition, offset and the broker's timestamp;
- files (`file_lines`): the file's path and the line number in it (1-based; a header line
  is line 1), from files read whole, so a line is never split across tasks.
Then `route` parses JSON or CSV values (PERMISSIVE: a value that does not fit the schema is
a reason, not an exception) and adds `reason`, null for a valid record. Transforms are pure
DataFrame -> DataFrame, tested without a source.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    VariantType,
)

from lakehouse.contracts import UNPARSEABLE, Contract, RecordSchema, Rule
from lakehouse.settings import Settings

KAFKA_SOURCE_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
FILE_COLUMNS = ("source_file", "source_line")
QUARANTINE_COLUMNS = ("reason", "raw_key", "raw_value")
_CORRUPT = "_unparseable"


def spark_schema(schema: RecordSchema) -> StructType:
    """The StructType to parse a message with: every field nullable, validation decides."""
    types = {"string": StringType(), "long": LongType(), "double": DoubleType()}
    return StructType([StructField(f.name, types[f.type], True) for f in schema.fields])


def kafka_stream(
    spark: SparkSession,
    settings: Settings,
    topics: Iterable[str],
    *,
    max_offsets: int | None = None,
) -> DataFrame:
    """The Kafka source of a bronze query: the topics from their earliest offsets (the
    checkpoint keeps where it is), at most `max_offsets` records per micro-batch (None: all)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", "earliest")
        # Offsets retention deleted before the stream read them fail the query, unless the
        # platform is set to skip them; then each batch counts them (spark/kafka_offsets.py).
        .option("failOnDataLoss", str(settings.kafka_fail_on_data_loss).lower())
    )
    if max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.load()


def kafka_records(raw: DataFrame) -> DataFrame:
    """Kafka source rows -> raw records with their Kafka position."""
    return raw.select(
        F.col("key").cast("string").alias("raw_key"),
        F.col("value").cast("string").alias("raw_value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    )


def file_lines(files: DataFrame, *, skip_header: bool = True) -> DataFrame:
    """Whole files (`spark.read.text(path, wholetext=True)` or its readStream twin, with
    `_metadata` selected) -> one raw record per non-empty line, with the file and the line
    number."""
    lines = files.select(
        F.col("_metadata.file_path").alias("source_file"),
        F.posexplode(F.split(F.col("value"), r"\r?\n")).alias("index", "raw_value"),
    )
    lines = lines.where(F.length("raw_value") > 0)
    if skip_header:
        lines = lines.where(F.col("index") > 0)
    return lines.select(
        F.lit(None).cast("string").alias("raw_key"),
        "raw_value",
        "source_file",
        (F.col("index") + 1).alias("source_line"),
    )


def first_violation(rules: tuple[Rule, ...]) -> Column:
    """The reason of the first rule the record breaks, or null when it breaks none."""
    reason = F.lit(None).cast("string")
    for rule in reversed(rules):
        reason = F.when(F.expr(rule.sql), F.lit(rule.reason)).otherwise(reason)
    return reason


def route(records: DataFrame, contract: Contract, *, fmt: str = "json") -> DataFrame:
    """Raw records -> their typed fields + `reason` (null when valid), provenance kept."""
    fields = spark_schema(contract.latest).add(_CORRUPT, "string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    if fmt == "json":
        # JSON has no single-quoted strings: Python's json (the producers' self-check) refuses
        # them, so Spark does too. Non-numeric numbers (NaN, Infinity) stay allowed: JSON
        # writers emit them (Python's json does), and the contract names them (non_finite_*).
        options["allowSingleQuotes"] = "false"
        parsed = F.from_json(F.col("raw_value"), fields, options)
    elif fmt == "csv":
        ddl = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in fields.fields)
        parsed = F.from_csv(F.col("raw_value"), ddl, options)
    else:
        raise ValueError(f"unknown record format {fmt!r}: json or csv")
    routed = records.select("*", parsed.alias("_record")).select("*", "_record.*")
    mistyped = F.col(_CORRUPT).isNotNull()
    if fmt == "json":
        mistyped = mistyped | _coerced_values(contract, options)
    # Blank is empty: Spark's JSON reader makes a record of nulls of it, not a corrupt one.
    empty = F.col("raw_value").isNull() | (F.btrim("raw_value", F.lit(" \t\r\n")) == "")
    reason = (
        F.when(empty, F.lit("empty_payload"))
        .when(mistyped, F.lit(UNPARSEABLE))
        .otherwise(first_violation(contract.all_rules))
    )
    return routed.withColumn("reason", reason).drop("_record", _CORRUPT)


# The text Spark's JSON reader makes of a number, a boolean, an object or an array for a
# string field: NaN and Infinity it writes quoted ("NaN"), objects and arrays compact.
_COERCED_TEXT = (
    r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
    r'|"?(-?Infinity|NaN)"?$|true$|false$|[\[{])'
)


def _coerced_values(contract: Contract, options: dict[str, str]) -> Column:
    """True when Spark's JSON reader made a value of the field's type from another JSON type,
    which the contract (and its Python reading) calls mistyped: it turns a number, a boolean,
    an object or an array into its text for a string field, and the strings "NaN",
    "Infinity", "+INF", "-Infinity"... into a double. Only a value that may come from such a
    coercion (a text like a number or a brace, a double that is not finite) is parsed again,
    as variant, to learn its JSON type, so the usual record costs one regex match per string
    field and no second parse."""
    broken = F.lit(False)
    for field in contract.latest.fields:
        value = F.col(field.name)
        if field.type == "string":
            suspect = value.rlike(_COERCED_TEXT)
        elif field.type == "double":
            suspect = F.isnan(value) | (F.abs(value) == float("inf"))
        else:
            continue  # Spark refuses any other JSON type for a long: a corrupt record
        as_variant = StructType([StructField(field.name, VariantType(), True)])
        json_type = F.schema_of_variant(
            F.from_json(F.col("raw_value"), as_variant, options)[field.name]
        )
        if field.type == "string":
            wrong = ~json_type.isin("STRING", "VOID")
        else:
            wrong = json_type == "STRING"
        suspect = F.coalesce(suspect, F.lit(False))
        broken = broken | F.when(suspect, F.coalesce(wrong, F.lit(False))).otherwise(False)
    return broken


def accepted(routed: DataFrame) -> DataFrame:
    return routed.where(F.col("reason").isNull())


def quarantined(routed: DataFrame, provenance: tuple[str, ...]) -> DataFrame:
    """The refused records: the reason, the raw payload and where it came from."""
    return routed.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS, *provenance)
