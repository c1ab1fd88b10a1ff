# 006_konvox_flow.pl again, over HTTPS: the receiver serves a certificate
# of the tests' own CA, which the cluster trusts through
# konvox_webhooks.ca_file, so every event of the flow reached its endpoints
# through a verified TLS connection (the receiver speaks nothing else).

use strict;
use warnings;

use FindBin;
# loaded here, not first by the script run below: their INIT blocks must run
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

$ENV{KW_TEST_HTTPS} = 1;
my $test = "$FindBin::RealBin/006_konvox_flow.pl";
do $test;
die "$test: $@" if $@;
