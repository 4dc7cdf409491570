"""The S3 store and everything that talks to S3: settings, client, multipart writer, ranged reader."""
