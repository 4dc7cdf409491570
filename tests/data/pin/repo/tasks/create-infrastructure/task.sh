#!/bin/sh
echo "creating infrastructure on $IAAS"
