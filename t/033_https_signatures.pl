# 005_signatures.pl again, over HTTPS: the receiver serves a certificate of
# the tests' own CA, which the cluster trusts through
# konvox_webhooks.ca_file, so every delivery whose signature is checked
# there went through a verified TLS connection (the receiver speaks nothing
# else).

use strict;
use warnings;

use FindBin;
# loaded here, not first by the script run below: their INIT blocks must run
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

$ENV{KW_TEST_HTTPS} = 1;
my $test = "$FindBin::RealBin/005_signatures.pl";
do $test;
die "$test: $@" if $@;
